"""Tasks and the fan-out without a worker: what gets published (ids only, expires, stagger),
the per-round guard, which customers are due, "refresh now", and retries run eagerly."""

import os
import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connections
from django.utils import timezone

from msp_dashboard.celery import app
from portals.models import Customer
from portals.services import (
    customer_refresh_now,
    customers_due,
    customers_enqueue_due,
)
from portals.tasks import refresh_customer, refresh_due
from tokens.models import Credential, CredentialState

from .conftest import need
from .refresh_support import (
    PublishLog,
    calls,
    fault,
    isolate_file_cache,
    legacy_customers,
    purge,
    use_test_broker,
)

REFRESH = "portals.tasks.refresh_customer"


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path, tmp_path_factory):
    isolate_file_cache(settings, tmp_path)
    use_test_broker(app, tmp_path_factory.mktemp("broker"), os.environ.get("REDIS_URL", ""))
    settings.REFRESH_INTERVAL = 300
    yield
    purge(app)  # nothing we published is left for another test's worker


@pytest.fixture
def published():
    with PublishLog() as log:
        yield log


# --- the fan-out --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_fanout_enqueues_each_due_customer_with_ids_expiry_and_stagger(
    simulator, published, settings
):
    customers = legacy_customers(simulator, count=4)
    now = timezone.now()

    assert customers_enqueue_due(now=now) == 4

    messages = published.named(REFRESH)
    assert sorted(m["args"][0] for m in messages) == sorted(c.pk for c in customers)
    delays = sorted(published.delay_of(m) for m in messages)
    assert delays[0] < 1 and delays[-1] <= settings.REFRESH_INTERVAL / 2
    assert len({round(d) for d in delays}) == 4  # spread, not all at once
    expected_expiry = (now + timedelta(seconds=settings.REFRESH_INTERVAL)).isoformat()
    for message in messages:
        assert [type(a) for a in message["args"]] == [int]  # SEC-10: an id, nothing else
        assert message["kwargs"] == {}
        assert message["headers"]["expires"] == expected_expiry
    assert all(c.refresh_enqueued_at == now for c in Customer.objects.filter(pk__in=[
        c.pk for c in customers]))  # fmt: skip


@pytest.mark.django_db
def test_a_second_round_within_the_interval_enqueues_nothing(simulator, published, settings):
    legacy_customers(simulator, count=3)
    now = timezone.now()
    assert customers_enqueue_due(now=now) == 3
    assert customers_enqueue_due(now=now + timedelta(seconds=1)) == 0
    assert customers_enqueue_due(now=now + timedelta(seconds=120)) == 0
    # The next round (one interval later, or a little early) takes them all again.
    assert customers_enqueue_due(now=now + timedelta(seconds=290)) == 3
    assert len(published.named(REFRESH)) == 6


@pytest.mark.django_db(transaction=True)
def test_concurrent_rounds_claim_each_customer_once(simulator, published):
    customers = legacy_customers(simulator)
    counts = []
    start = threading.Barrier(4)

    def round_():
        try:
            start.wait()
            counts.append(customers_enqueue_due())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=round_) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sum(counts) == len(customers)
    assert sorted(m["args"][0] for m in published.named(REFRESH)) == sorted(c.pk for c in customers)


@pytest.mark.django_db
def test_who_is_due(simulator):
    customers = legacy_customers(simulator, count=7)
    now = timezone.now()
    later = now + timedelta(minutes=5)
    (fresh, throttled, paused, leased, inactive, invalid, enqueued) = customers
    Customer.objects.filter(pk=throttled.pk).update(throttled_until=later)
    Customer.objects.filter(pk=paused.pk).update(paused_until=later)
    # Leased past this round's expiry (a lease ending sooner only defers the refresh).
    Customer.objects.filter(pk=leased.pk).update(lease_until=later)
    Customer.objects.filter(pk=inactive.pk).update(is_active=False)
    Credential.objects.filter(customer=invalid).update(state=CredentialState.INVALID)
    Customer.objects.filter(pk=enqueued.pk).update(refresh_enqueued_at=now)
    no_credential = Customer.objects.filter(credentials=None).first()

    due = set(customers_due(now=now).values_list("pk", flat=True))

    assert due == {fresh.pk}
    assert no_credential.pk not in due
    # A replacement credential makes the invalid one's customer due again (REL-12).
    Credential.objects.filter(customer=invalid).update(state=CredentialState.ACTIVE)
    assert invalid.pk in set(customers_due(now=now).values_list("pk", flat=True))
    # Pauses and throttles end by themselves.
    due_later = set(customers_due(now=later).values_list("pk", flat=True))
    assert {throttled.pk, paused.pk, leased.pk, enqueued.pk} <= due_later


@pytest.mark.django_db
def test_refresh_due_task_is_the_fanout(simulator, published):
    legacy_customers(simulator, count=2)
    assert refresh_due.run() == 2
    assert len(published.named(REFRESH)) == 2


# --- refresh now --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_refresh_now_queues_at_once_even_when_paused(
    simulator, published, django_capture_on_commit_callbacks
):
    customer = legacy_customers(simulator, count=1)[0]
    Customer.objects.filter(pk=customer.pk).update(
        paused_until=timezone.now() + timedelta(minutes=10), refresh_enqueued_at=timezone.now()
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        result = customer_refresh_now(customer_id=customer.pk)
        assert published.named(REFRESH) == []  # only once the transaction commits
    assert len(callbacks) == 1

    assert result.queued
    (message,) = published.named(REFRESH)
    assert message["args"] == [customer.pk] and message["kwargs"] == {"manual": True}
    assert published.delay_of(message) == 0 and message["headers"]["expires"]


@pytest.mark.django_db
def test_refresh_now_refuses_what_cannot_work(simulator, published):
    with_token, without = legacy_customers(simulator, count=1)[0], Customer.objects.last()
    assert "no usable credential" in customer_refresh_now(customer_id=without.pk).message

    Customer.objects.filter(pk=with_token.pk).update(
        throttled_until=timezone.now() + timedelta(minutes=3)
    )
    refusal = customer_refresh_now(customer_id=with_token.pk)
    assert not refusal.queued and "wait" in refusal.message

    Customer.objects.filter(pk=with_token.pk).update(throttled_until=None, is_active=False)
    assert "no longer listed" in customer_refresh_now(customer_id=with_token.pk).message
    assert published.named(REFRESH) == []


# --- the task itself, run eagerly (retries run at once) -----------------------------------------


@pytest.mark.django_db
def test_task_retries_transient_errors_at_most_three_times(simulator, settings):
    customer = legacy_customers(simulator, count=1)[0]
    fault(simulator, kind="reset")

    result = refresh_customer.apply(args=[customer.pk])

    assert result.get() == "failed"
    assert calls(simulator, "monitor_groups_status") == 1 + settings.REFRESH_MAX_RETRIES
    customer.refresh_from_db()
    assert customer.last_error_kind == "connection"
    assert customer.data_fetched_at is None and customer.last_success_at is None


@pytest.mark.django_db
def test_task_succeeds_after_a_transient_error(simulator):
    customer = legacy_customers(simulator, count=1)[0]
    fault(simulator, kind="status", http_status=500, count=1)
    assert refresh_customer.apply(args=[customer.pk]).get() == "ok"
    assert calls(simulator, "monitor_groups_status") == 2


@pytest.mark.django_db
def test_task_does_not_retry_auth_or_payload_errors(simulator):
    first, second = legacy_customers(simulator, count=2)
    fault(simulator, kind="invalid_token", customer=first.zaid)
    fault(simulator, kind="malformed", customer=second.zaid)
    assert refresh_customer.apply(args=[first.pk]).get() == "failed"
    assert refresh_customer.apply(args=[second.pk]).get() == "failed"
    assert calls(simulator, "monitor_groups_status") == 2


@pytest.mark.django_db
def test_breaker_stops_retries(simulator, settings):
    settings.BREAKER_THRESHOLD = 2
    customer = legacy_customers(simulator, count=1)[0]
    fault(simulator, kind="status", http_status=503)
    refresh_customer.apply(args=[customer.pk])
    assert calls(simulator, "monitor_groups_status") == 2  # the second failure opened it
    customer.refresh_from_db()
    assert customer.paused_until is not None


@pytest.mark.django_db
def test_inactive_customer_task_ends_quietly(published):
    assert refresh_customer.apply(args=[123456]).get() == "skipped"
    assert published.messages == []


@pytest.mark.django_db
def test_fanout_after_an_idle_day_picks_everyone_again(simulator, published):
    legacy_customers(simulator, count=2)
    now = timezone.now()
    customers_enqueue_due(now=now)
    with time_machine.travel(now + timedelta(days=1)):
        assert customers_enqueue_due() == 2


def test_the_batch_size_follows_the_round(settings):
    from portals.services import batch_size_for

    settings.REFRESH_CONCURRENCY, settings.REFRESH_BATCH_SIZE = 32, 0
    sizes = [batch_size_for(due) for due in (1, 100, 128, 129, 256, 1000, 5000)]
    assert sizes == [1, 1, 1, 2, 2, 8, 10]  # a small MSP: every refresh its own message
    settings.REFRESH_BATCH_SIZE = 3
    assert batch_size_for(1) == batch_size_for(5000) == 3


def test_the_first_waves_batches_are_spread_so_they_do_not_end_together(settings):
    """Automatic batches: the first one per worker thread range from half to one and a half
    times the size (every thread starts at once; equal batches would all be stored at the
    same moment), the last one per thread is a quarter of it (the threads end together), the
    rest are the size; every customer goes out once, in order. A size set in
    REFRESH_BATCH_SIZE is kept as it is."""
    from portals.services import _batches

    settings.REFRESH_CONCURRENCY, settings.REFRESH_BATCH_SIZE = 32, 0
    pks = list(range(1, 1001))
    batches = _batches(pks)
    assert [pk for batch in batches for pk in batch] == pks
    first = [len(batch) for batch in batches[:32]]
    assert first == sorted(first) and (first[0], first[-1]) == (4, 12)
    assert sum(first) == 32 * 8 and len(set(first)) >= 8
    assert [len(batch) for batch in batches[-32:]] == [2] * 32
    assert {len(batch) for batch in batches[32:-33]} == {8}
    assert len(batches) == 32 + (1000 - 256 - 64) // 8 + 32
    settings.REFRESH_BATCH_SIZE = 8
    assert {len(batch) for batch in _batches(pks)} == {8}


def test_the_last_wave_of_a_smaller_round(settings):
    from portals.services import _batches

    settings.REFRESH_CONCURRENCY, settings.REFRESH_BATCH_SIZE = 32, 0
    assert _batches(list(range(1, 101))) == list(range(1, 101))  # one message each already
    batches = _batches(list(range(1, 201)))  # size 2: the last 32 customers one by one
    assert [pk for batch in batches for pk in batch] == list(range(1, 201))
    assert batches[-32:] == [[pk] for pk in range(169, 201)]


def _queued(app) -> int:
    """Messages waiting in the default queue of the broker the app points at."""
    with app.connection_for_read() as conn:
        return conn.default_channel.queue_declare(app.conf.task_default_queue, passive=True)[1]


@pytest.mark.parametrize("broker", ["redis", "filesystem"])
def test_a_round_reaches_the_broker_whole_through_one_redis_client(broker, tmp_path, monkeypatch):
    """Every planned message is in the queue afterwards, on Redis and on the demo's
    filesystem broker. On Redis the channel keeps its client: kombu built one per message."""
    from kombu.transport import redis as kombu_redis

    from portals.services import refreshes_enqueue

    redis_url = os.environ.get("REDIS_URL", "")
    need(broker == "filesystem" or bool(redis_url), "Redis (REDIS_URL)")
    made = []
    original = kombu_redis.Channel._create_client
    monkeypatch.setattr(  # a spy on kombu, not a stub: the client is still made and used
        kombu_redis.Channel, "_create_client",
        lambda self, asynchronous=False: made.append(asynchronous) or original(self, asynchronous),
    )  # fmt: skip
    options = dict(app.conf.broker_transport_options)
    try:
        use_test_broker(app, tmp_path, redis_url if broker == "redis" else "")
        purge(app)
        planned = [([pk, pk + 1000], 0.0) for pk in range(1, 41)]
        made.clear()
        refreshes_enqueue(planned, expires=timezone.now() + timedelta(minutes=5))
        refreshes_enqueue(planned[:5], expires=timezone.now() + timedelta(minutes=5))
        publishing = made.count(False)  # synchronous clients built (not BRPOP's)
        assert _queued(app) == 45
        purge(app)
    finally:  # the broker the other tests use
        app.conf.broker_transport_options = options
        use_test_broker(app, tmp_path / "after", redis_url)
    if broker == "redis":
        assert publishing <= 1  # 45 before: one per message
