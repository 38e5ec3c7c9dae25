"""Regression tests for the bugs the resilience tests found (issue 8), fast and in-process:

- a round skipped a customer whose lease a killed worker left behind, for a whole interval
  (REL-09): the refresh is now deferred to the lease's end;
- two beats half an interval apart took turns and refreshed every customer twice per interval
  (REL-03): the per-round guard is now three quarters of an interval;
- "Refresh now" and "Sync" answered 500 while Redis was down (REL-10): the broker's and the
  cache's outage are now a message for the operator, and the call budget fails closed (an
  OAuth refresh, whose access token lives in the cache, too);
- a worker holding staggered refreshes exited ("Unrecoverable error") when Redis went away,
  instead of reconnecting (REL-10): msp_dashboard.celery.RedisTransport."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu import Connection, Exchange, Queue

from msp_dashboard.celery import RedisChannel, app
from portals.limits import BudgetUnavailable, budget_take
from portals.models import Customer
from portals.services import (
    BROKER_DOWN,
    RefreshResult,
    customer_refresh,
    customer_refresh_now,
    customers_enqueue_due,
    customers_sync_all,
)

from .conftest import need
from .refresh_support import (
    PublishLog,
    calls,
    isolate_file_cache,
    legacy_customers,
    oauth_customers,
    sim_post,
)
from .resilience_support import RedisServer, broker_at, filesystem_broker, free_port

REFRESH = "portals.tasks.refresh_customer"


def _dead_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there


def _dead_cache() -> dict:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _dead_redis(),
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "x"))
    return client


# --- REL-09: a lease left by a killed worker defers the refresh, it does not skip the round ----


@pytest.mark.django_db
def test_a_round_defers_a_customer_whose_lease_ends_within_it(simulator, settings, tmp_path):
    settings.REFRESH_INTERVAL = 300
    isolate_file_cache(settings, tmp_path)
    dead_worker, still_running, free = legacy_customers(simulator, count=3)
    now = timezone.now()
    Customer.objects.filter(pk=dead_worker.pk).update(
        lease_until=now + timedelta(seconds=40), lease_token="k" * 32
    )
    Customer.objects.filter(pk=still_running.pk).update(
        lease_until=now + timedelta(seconds=400), lease_token="r" * 32
    )

    with broker_at(app, *filesystem_broker(tmp_path / "broker")), PublishLog() as published:
        assert customers_enqueue_due(now=now) == 2

    delays = {m["args"][0]: published.delay_of(m) for m in published.named(REFRESH)}
    assert set(delays) == {dead_worker.pk, free.pk}  # a lease past the round still skips it
    assert 40 <= delays[dead_worker.pk] < settings.REFRESH_INTERVAL  # after the lease, in time
    assert delays[free.pk] <= settings.REFRESH_INTERVAL / 2  # its place in the stagger


# --- REL-03: two beats half an interval apart do not refresh every customer twice -------------


@pytest.mark.django_db
def test_two_beats_half_an_interval_apart_claim_each_customer_once_per_interval(
    simulator, settings, tmp_path
):
    settings.REFRESH_INTERVAL = 300
    isolate_file_cache(settings, tmp_path)
    customers = legacy_customers(simulator, count=2)
    start = timezone.now()
    # Beat A at 0, 1, 2 intervals; beat B half an interval later, drifting by 1 % a round.
    ticks = sorted([0.0, 1.0, 2.0] + [0.51, 1.52, 2.53])

    with broker_at(app, *filesystem_broker(tmp_path / "broker")), PublishLog() as published:
        for tick in ticks:
            customers_enqueue_due(now=start + timedelta(seconds=tick * 300))

    refreshes = [m["args"][0] for m in published.named(REFRESH)]
    assert sorted(refreshes) == sorted([c.pk for c in customers] * 3)  # once per interval


# --- REL-10: the broker or the cache down is a message, never a 500 ----------------------------


@pytest.mark.django_db(transaction=True)
def test_refresh_now_with_the_broker_down_says_so(simulator, superuser_client):
    customer = legacy_customers(simulator, count=1)[0]

    with broker_at(app, _dead_redis(), "msp_dashboard.celery:RedisTransport"):
        result = customer_refresh_now(customer_id=customer.pk)
        response = superuser_client.post(f"/customers/{customer.pk}/refresh/")

    assert (result.queued, result.message) == (False, BROKER_DOWN)
    assert response.status_code in (204, 302)


@pytest.mark.django_db(transaction=True)
def test_a_cache_outage_fails_the_call_budget_closed(simulator, settings, superuser_client):
    customer = legacy_customers(simulator, count=1)[0]
    assert customer_refresh(customer_id=customer.pk).result == RefreshResult.OK
    before = Customer.objects.get(pk=customer.pk)
    groups = customer.groups.count()
    sim_post(simulator, "counters/reset")
    settings.CACHES = _dead_cache()

    with pytest.raises(BudgetUnavailable):
        budget_take(credential_id=1, endpoint="monitor_groups_status", account=customer.pk)
    outcome = customer_refresh(customer_id=customer.pk)
    reports = customers_sync_all()
    response = superuser_client.post("/customers/sync/")

    assert (outcome.result, outcome.reason, outcome.retry_in) == ("failed", "budget", None)
    assert calls(simulator, "monitor_groups_status") == 0  # no call on an unknown budget
    after = Customer.objects.get(pk=customer.pk)
    assert after.data_fetched_at == before.data_fetched_at
    assert after.last_error == str(BudgetUnavailable()) and after.consecutive_failures == 0
    assert after.throttled_until is None
    assert customer.groups.count() == groups  # previous data kept
    assert [r.error for r in reports] == [str(BudgetUnavailable())]
    assert response.status_code in (204, 302)


@pytest.mark.django_db(transaction=True)
def test_a_cache_outage_fails_an_oauth_refresh_cleanly(simulator, settings):
    """OAuth reads its shared access token from the cache before any call."""
    customer = oauth_customers(simulator)[0]
    assert customer_refresh(customer_id=customer.pk).result == RefreshResult.OK
    sim_post(simulator, "counters/reset")
    settings.CACHES = _dead_cache()

    outcome = customer_refresh(customer_id=customer.pk)
    reports = customers_sync_all()

    assert (outcome.result, outcome.reason, outcome.retry_in) == ("failed", "budget", None)
    assert calls(simulator, "current_status") == calls(simulator, "oauth_token") == 0
    assert Customer.objects.get(pk=customer.pk).last_error == str(BudgetUnavailable())
    assert [r.error for r in reports] == [str(BudgetUnavailable())]


# --- REL-10: a worker's channel closes after Redis went away without stopping the worker -------


def test_redis_channel_closes_without_its_client(tmp_path):
    """Celery's path after a lost connection: the transport's client is dropped (collect),
    then the channel holding unacked messages is closed. kombu's own channel raises
    AttributeError there, which stops the worker."""
    need(RedisServer.available(), "redis-server")
    redis = RedisServer(tmp_path / "redis").start()
    try:
        connection = Connection(redis.url, transport="msp_dashboard.celery:RedisTransport")
        queue = Queue("resilience", Exchange("resilience"), "resilience")
        with Connection(redis.url) as producer:
            producer.SimpleQueue(queue).put({"n": 1})
        channel = connection.default_channel
        assert isinstance(channel, RedisChannel)
        received = []
        consumer = connection.Consumer(queue, channel=channel, callbacks=[
            lambda body, message: received.append(message)
        ])  # fmt: skip
        consumer.consume()
        connection.drain_events(timeout=5)
        assert len(received) == 1  # held, not acknowledged
    finally:
        redis.kill()
    connection.transport.client = None  # what collect() leaves behind

    channel.close()  # no AttributeError

    assert channel.closed


def test_redis_server_helper_restarts_on_the_same_port(tmp_path):
    need(RedisServer.available(), "redis-server")
    redis = RedisServer(tmp_path / "redis").start()
    try:
        port = redis.port
        redis.kill()
        assert not redis.ping()
        started = time.monotonic()
        redis.start()
        assert redis.ping() and redis.port == port and time.monotonic() - started < 15
    finally:
        redis.kill()
