"""Celery configuration invariants (REL-11, SEC-10) and the demo's filesystem broker."""

import threading
from datetime import timedelta

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue

from msp_dashboard.celery import FilesystemTransport, app
from portals.services import lease_timeout
from portals.tasks import refresh_customer, refresh_due, sync_customers


def test_json_only_everywhere():
    assert app.conf.task_serializer == app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]


def test_one_message_at_a_time_early_ack_and_reconnect():
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_acks_late is False  # REL-09: a lost refresh is the next round's
    assert app.conf.broker_connection_retry_on_startup is True
    assert app.conf.worker_concurrency == settings.REFRESH_CONCURRENCY


def test_time_limits_are_set_and_the_lease_outlives_them():
    assert app.conf.task_time_limit == settings.TASK_TIME_LIMIT
    assert app.conf.task_soft_time_limit == settings.TASK_SOFT_TIME_LIMIT
    assert refresh_customer.time_limit == settings.TASK_TIME_LIMIT
    assert refresh_customer.soft_time_limit == settings.TASK_SOFT_TIME_LIMIT
    assert settings.TASK_SOFT_TIME_LIMIT < settings.TASK_TIME_LIMIT
    # One hanging upstream ends by its read timeout, well inside the soft limit.
    read = settings.SITE24X7_CONNECT_TIMEOUT + settings.SITE24X7_READ_TIMEOUT
    assert read < settings.TASK_SOFT_TIME_LIMIT
    assert lease_timeout() > timedelta(seconds=settings.TASK_TIME_LIMIT)


def test_visibility_timeout_covers_limit_backoff_and_interval():
    """A message held by a worker (ETA, retry countdown) is never redelivered meanwhile."""
    if not settings.REDIS_URL:
        pytest.skip("visibility timeout applies to the Redis broker")
    vt = app.conf.broker_transport_options["visibility_timeout"]
    assert vt > settings.TASK_TIME_LIMIT + settings.REFRESH_BACKOFF_MAX + settings.REFRESH_INTERVAL
    # The longest countdown a refresh can get: its stagger or a retry (capped at the max).
    assert vt > max(settings.REFRESH_INTERVAL / 2, settings.REFRESH_BACKOFF_MAX)


def test_retries_are_bounded():
    assert settings.REFRESH_MAX_RETRIES == 3
    assert 0 < settings.REFRESH_BACKOFF_BASE <= settings.REFRESH_BACKOFF_MAX


def test_beat_rounds_expire_by_the_next_round():
    refresh = settings.CELERY_BEAT_SCHEDULE["refresh-due"]
    assert refresh["task"] == refresh_due.name
    assert refresh["options"]["expires"] <= refresh["schedule"] == settings.REFRESH_INTERVAL
    sync = settings.CELERY_BEAT_SCHEDULE["sync-customers"]
    assert sync["task"] == sync_customers.name and sync["options"]["expires"]


def test_tasks_ignore_results():
    """Nothing a task returns lands in a result backend (SEC-10: no token there either)."""
    assert app.conf.task_ignore_result is True
    for task in (refresh_due, refresh_customer, sync_customers):
        assert task.ignore_result is True


def test_demo_broker_is_the_safe_filesystem_transport():
    if settings.REDIS_URL:
        assert app.conf.broker_url == settings.REDIS_URL
    else:
        assert settings.CELERY_BROKER_URL == "filesystem://"
        assert settings.CELERY_BROKER_TRANSPORT == "msp_dashboard.celery:FilesystemTransport"


def test_filesystem_broker_delivers_each_message_once_to_racing_consumers(tmp_path):
    """Writers and two consumers race on one folder: no half-written message is read (kombu's
    own transport raises JSONDecodeError there and stops the worker) and none is read twice."""
    options = _broker_options(tmp_path)
    queue = Queue("race", Exchange("race", type="direct"), routing_key="race")
    total, received, lock = 300, [], threading.Lock()
    writers_done = threading.Event()

    def write(offset: int) -> None:
        with Connection(transport=FilesystemTransport, transport_options=options) as conn:
            producer = conn.Producer(serializer="json")
            for i in range(offset, total, 3):
                producer.publish({"n": i}, exchange=queue.exchange, routing_key="race",
                                 declare=[queue])  # fmt: skip

    def consume() -> None:
        with Connection(transport=FilesystemTransport, transport_options=options) as conn:
            simple = conn.SimpleQueue(queue)
            while True:
                try:
                    message = simple.get(timeout=0.2)
                except simple.Empty:
                    # An empty poll under load is not the end: stop once every message is in
                    # (a lost one fails the assertion below after the join's 30 s).
                    with lock:
                        if writers_done.is_set() and len(received) >= total:
                            return
                    continue
                with lock:
                    received.append(message.payload["n"])
                message.ack()

    writers = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    consumers = [threading.Thread(target=consume, daemon=True) for _ in range(2)]
    for thread in writers + consumers:
        thread.start()
    for thread in writers:
        thread.join(30)
    writers_done.set()
    for thread in consumers:
        thread.join(30)

    assert sorted(received) == list(range(total))
    assert list((tmp_path / "done").iterdir()) == []


def _broker_options(folder):
    for name in ("q", "done", "control"):
        (folder / name).mkdir(parents=True)
    return {
        "data_folder_in": str(folder / "q"),
        "data_folder_out": str(folder / "q"),
        "processed_folder": str(folder / "done"),
        "control_folder": str(folder / "control"),
    }


def test_filesystem_broker_routes_a_binding_this_process_recorded_before_its_file(tmp_path):
    """kombu records a binding in its per-process state before it writes the exchange file;
    a publish that finds the binding recorded but no file (another thread in between, or a
    second broker folder) was dropped as undeliverable. It is delivered."""
    exchange = Exchange("recorded", type="direct")
    queue = Queue("recorded", exchange, routing_key="recorded")
    for run, folder in enumerate((tmp_path / "first", tmp_path / "second")):
        options = _broker_options(folder)
        with Connection(transport=FilesystemTransport, transport_options=options) as conn:
            conn.Producer(serializer="json").publish(
                {"run": run}, exchange=exchange, routing_key="recorded", declare=[queue]
            )
            message = conn.SimpleQueue(queue).get(timeout=2)
            assert message.payload == {"run": run}
            message.ack()
