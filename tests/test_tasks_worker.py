"""The refresh engine end to end: a real Celery worker (in-process, thread pool) on a real broker
(Redis when REDIS_URL is set, else the filesystem transport under a temporary folder), the real
database and the simulator over HTTP with its fault injection."""

import os
import threading
import time

import pytest
from django.db import connections
from django.utils import timezone

from msp_dashboard.celery import app
from portals.models import Customer, StatusChange
from portals.services import customer_refresh, customer_sync
from portals.tasks import refresh_customer, refresh_due
from tokens.models import AuditAction, AuditEvent, CredentialState

from .refresh_support import (
    PublishLog,
    RunLog,
    calls,
    fault,
    grid_snapshot,
    isolate_file_cache,
    legacy_customers,
    oauth_credential,
    purge,
    sim_get,
    sim_post,
    thread_worker,
    upstream_of,
    use_test_broker,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

REFRESH = "portals.tasks.refresh_customer"
FANOUT = "portals.tasks.refresh_due"


@pytest.fixture(autouse=True)
def _fast_settings(settings, tmp_path):
    isolate_file_cache(settings, tmp_path)
    settings.REFRESH_INTERVAL = 4
    settings.REFRESH_BACKOFF_BASE = 0.1
    settings.REFRESH_BACKOFF_MAX = 5.0
    settings.SITE24X7_READ_TIMEOUT = 1.0


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    use_test_broker(app, tmp_path_factory.mktemp("broker"), os.environ.get("REDIS_URL", ""))
    return app


@pytest.fixture
def worker(broker):
    """Start a worker on demand (`with worker(): ...`); the queue is purged first, so nothing
    from an earlier test runs."""
    purge(broker)

    return lambda concurrency=8: thread_worker(broker, concurrency)


@pytest.fixture
def logs():
    with PublishLog() as published, RunLog() as ran:
        yield published, ran


def _reload(customer) -> Customer:
    return Customer.objects.get(pk=customer.pk)


def _fresh(customer) -> bool:
    return _reload(customer).data_fetched_at is not None


# --- the fresh path -----------------------------------------------------------------------------


def test_beat_round_refreshes_every_due_customer_once(simulator, worker, logs, settings):
    published, ran = logs
    settings.REFRESH_INTERVAL = 2  # refreshes spread over one second
    customers = legacy_customers(simulator)
    sim_post(simulator, "counters/reset")

    with worker():
        refresh_due.apply_async(expires=settings.REFRESH_INTERVAL)
        wait_for(lambda: all(_fresh(c) for c in customers), what="every customer fresh")
        wait_for(lambda: ran.count(REFRESH) == len(customers), what="refreshes finished")

    assert calls(simulator, "monitor_groups_status") == len(customers)
    messages = published.named(REFRESH)
    assert sorted(m["args"][0] for m in messages) == sorted(c.pk for c in customers)
    for message in messages:  # SEC-10: ids only; REL-03: expires within the interval
        assert [type(a) for a in message["args"]] == [int] and message["kwargs"] == {}
        assert message["headers"]["expires"]
        assert published.delay_of(message) <= settings.REFRESH_INTERVAL / 2
    assert len({round(published.delay_of(m), 1) for m in messages}) > 1  # staggered


def test_status_change_upstream_is_recorded(simulator, worker, logs):
    _, ran = logs
    customer = legacy_customers(simulator, count=1)[0]
    group = next(g for g in upstream_of(simulator, customer)["groups"] if g["top_group"])
    new_status = 0 if group["status"] != 0 else 1

    with worker():
        refresh_customer.delay(customer.pk)
        wait_for(lambda: ran.count(REFRESH) == 1)
        sim_post(
            simulator,
            "status",
            {"customer": customer.zaid, "group_id": group["group_id"], "status": new_status},
        )
        refresh_customer.delay(customer.pk)
        wait_for(lambda: ran.count(REFRESH) == 2)

    change = StatusChange.objects.filter(group_id=group["group_id"]).exclude(from_status=None)
    assert [(c.from_status, c.to_status) for c in change] == [(group["status"], new_status)]


# --- transient failures: retried by Celery, then fresh ------------------------------------------


def test_429_is_retried_no_sooner_than_retry_after(simulator, worker, logs):
    published, ran = logs
    customer = legacy_customers(simulator, count=1)[0]
    fault(simulator, kind="status", http_status=429, retry_after=1, count=2)

    with worker():
        refresh_customer.delay(customer.pk)
        wait_for(lambda: _fresh(customer), what="fresh after two 429s")

    assert calls(simulator, "monitor_groups_status") == 3
    assert len([m for m in published.named(REFRESH) if m["headers"].get("retries")]) == 2
    assert len(ran.retry_countdowns) == 2
    assert all(countdown >= 1.0 for countdown in ran.retry_countdowns)
    customer = _reload(customer)
    assert customer.last_error == "" and customer.throttled_until is None


# --- batches (REFRESH_BATCH_SIZE) -----------------------------------------------------------------

BATCH = "portals.tasks.refresh_batch"


def test_a_large_round_goes_out_in_batches_and_refreshes_each_customer_once(
    simulator, worker, logs, settings
):
    published, ran = logs
    settings.REFRESH_BATCH_SIZE = 3
    customers = legacy_customers(simulator)
    sim_post(simulator, "counters/reset")

    with worker():
        refresh_due.delay()
        wait_for(lambda: all(_fresh(c) for c in customers), what="every customer fresh")
        wait_for(lambda: ran.count(BATCH) == 3, what="the batches finished")

    batches = [m["args"][0] for m in published.named(BATCH)]
    assert [len(b) for b in batches] == [3, 3, 2]  # ids only (SEC-10)
    assert sorted(pk for batch in batches for pk in batch) == sorted(c.pk for c in customers)
    assert published.named(REFRESH) == []
    assert calls(simulator, "monitor_groups_status") == len(customers)
    assert all(m["headers"]["expires"] for m in published.named(BATCH))


def test_a_batched_round_stores_what_single_refreshes_store(
    simulator, worker, logs, settings, admin_client
):
    """Batches store their customers in one transaction (customers_store_fetched) and run
    the alert engine once (customers_observe): the grid, the history and the alert states
    after a batched round are what per-customer refreshes make of the same upstream."""
    from alerts.models import AlertState

    published, _ = logs
    count = len(legacy_customers(simulator))

    def round_(batch_size: int) -> None:
        settings.REFRESH_BATCH_SIZE = batch_size
        Customer.objects.update(refresh_enqueued_at=None)  # past the per-round guard
        started = timezone.now()
        refresh_due.delay()
        wait_for(lambda: Customer.objects.filter(data_fetched_at__gt=started).count() == count)

    def states() -> dict:
        return {(s.customer_id, s.group_id): s.status for s in AlertState.objects.all()}

    with worker():
        round_(1)
        before = grid_snapshot(admin_client)
        assert sim_post(simulator, "drift", {"steps": 6})["changes"]
        history = StatusChange.objects.count()
        round_(4)  # two batches of four
        batched, batched_states = grid_snapshot(admin_client), states()
        recorded = StatusChange.objects.count() - history
        round_(1)
        single, single_states = grid_snapshot(admin_client), states()

    assert [len(m["args"][0]) for m in published.named(BATCH)] == [4, 4]
    assert batched != before and batched == single
    assert batched_states == single_states
    assert recorded > 0 and StatusChange.objects.count() == history + recorded  # none missed
    assert not Customer.objects.exclude(lease_token="").exists()  # every lease released
    assert not Customer.objects.filter(last_duration__isnull=True).exists()


def test_a_failing_customer_in_a_batch_is_retried_on_its_own(simulator, worker, logs, settings):
    published, ran = logs
    settings.REFRESH_BATCH_SIZE = 4
    customers = legacy_customers(simulator, count=4)
    failing = customers[1]
    fault(simulator, kind="status", http_status=503, count=1, customer=failing.zaid)
    sim_post(simulator, "counters/reset")

    with worker():
        refresh_due.delay()
        wait_for(lambda: all(_fresh(c) for c in customers), what="every customer fresh")

    (retry,) = published.named(REFRESH)
    assert (retry["args"], retry["kwargs"]) == ([failing.pk], {"first_attempt": 1})
    assert calls(simulator, "monitor_groups_status") == 5  # four, and the one retry
    assert [r for r in ran.retvals(BATCH)] == [["ok", "failed", "ok", "ok"]]
    assert _reload(failing).consecutive_failures == 0


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "status", "http_status": 502},
        {"kind": "reset"},
        {"kind": "hang", "hang_s": 5},
        {"kind": "html", "http_status": 503},
    ],
    ids=["5xx", "reset", "hang", "html-5xx"],
)
def test_transient_failure_then_success(simulator, worker, logs, spec, settings):
    published, _ = logs
    settings.SITE24X7_READ_TIMEOUT = 0.5 if spec["kind"] == "hang" else 1.0
    customer = legacy_customers(simulator, count=1)[0]
    fault(simulator, count=1, **spec)

    with worker():
        refresh_customer.delay(customer.pk)
        wait_for(lambda: _fresh(customer), what="fresh after one failure")

    assert calls(simulator, "monitor_groups_status") == 2
    assert [m["headers"].get("retries") for m in published.named(REFRESH)] == [0, 1]
    assert _reload(customer).consecutive_failures == 0


@pytest.mark.slow
def test_unresolved_failures_never_mark_data_fresh(simulator, worker, logs, settings):
    _, ran = logs
    settings.SITE24X7_READ_TIMEOUT = 0.5
    customer = legacy_customers(simulator, count=1)[0]
    with worker():
        refresh_customer.delay(customer.pk)
        wait_for(lambda: ran.count(REFRESH) == 1)
        before = _reload(customer)
        fault(simulator, kind="hang", hang_s=5)
        refresh_customer.delay(customer.pk)
        wait_for(lambda: ran.count(REFRESH) == 2 + settings.REFRESH_MAX_RETRIES, timeout=30)

    after = _reload(customer)
    assert calls(simulator, "monitor_groups_status") == 2 + settings.REFRESH_MAX_RETRIES
    assert after.last_success_at == before.last_success_at
    assert after.data_fetched_at == before.data_fetched_at
    assert after.last_error_kind == "timeout"
    assert after.consecutive_failures == 1 + settings.REFRESH_MAX_RETRIES
    assert after.groups.count() == before.groups.count() > 0  # previous groups kept


# --- failures that are not retried --------------------------------------------------------------


def test_malformed_json_keeps_data_and_is_not_retried(simulator, worker, logs):
    _, ran = logs
    customer = legacy_customers(simulator, count=1)[0]
    with worker():
        refresh_customer.delay(customer.pk)
        wait_for(lambda: ran.count(REFRESH) == 1)
        groups = customer.groups.count()
        fault(simulator, kind="malformed", count=1)
        refresh_customer.delay(customer.pk)
        wait_for(lambda: ran.count(REFRESH) == 2)

    assert calls(simulator, "monitor_groups_status") == 2
    assert _reload(customer).last_error_kind == "response"
    assert customer.groups.count() == groups


def test_401_invalidates_the_credential_without_retry(simulator, worker, logs):
    published, ran = logs
    customers = legacy_customers(simulator, count=2)
    fault(simulator, kind="invalid_token", customer=customers[0].zaid)

    with worker():
        refresh_customer.delay(customers[0].pk)
        wait_for(lambda: ran.count(REFRESH) == 1)
        refresh_due.delay()
        wait_for(lambda: ran.count(FANOUT) == 1)
        wait_for(lambda: _fresh(customers[1]))

    assert calls(simulator, "monitor_groups_status") == 2
    assert customers[0].credentials.get().state == CredentialState.INVALID
    assert AuditEvent.objects.filter(
        action=AuditAction.CREDENTIAL_INVALID, customer_id=customers[0].pk
    ).exists()
    assert [m["args"] for m in published.named(REFRESH)] == [[customers[0].pk], [customers[1].pk]]
    assert _reload(customers[0]).last_error_kind == "auth"


# --- overlap, pile-up ---------------------------------------------------------------------------


def test_five_simultaneous_refreshes_make_one_call(simulator, worker, logs):
    _, ran = logs
    customer = legacy_customers(simulator, count=1)[0]
    fault(simulator, kind="latency", latency_ms=700)  # under the 1 s read timeout

    with worker():
        for _ in range(5):
            refresh_customer.delay(customer.pk)
        wait_for(lambda: ran.count(REFRESH) == 5)

    assert calls(simulator, "monitor_groups_status") == 1
    assert sorted(ran.retvals(REFRESH)) == ["ok"] + ["skipped"] * 4
    assert _reload(customer).lease_until is None


@pytest.mark.slow
def test_no_pile_up_after_the_workers_were_stopped(simulator, worker, logs, settings):
    published, ran = logs
    customers = legacy_customers(simulator)
    sim_post(simulator, "counters/reset")
    for _ in range(3):  # rounds from long ago: expired by now
        refresh_due.apply_async(expires=0.2)
    time.sleep(0.4)
    for _ in range(5):  # five rounds waiting in the queue
        refresh_due.apply_async(expires=settings.REFRESH_INTERVAL)

    with worker():
        wait_for(lambda: ran.count(FANOUT) == 5, what="the five live rounds")
        wait_for(lambda: ran.count(REFRESH) == len(published.named(REFRESH)))

    counters = sim_get(simulator, "counters")
    assert counters["requests"]["monitor_groups_status"] == len(customers)
    per_customer = [v["monitor_groups_status"] for v in counters["by_customer"].values()]
    assert per_customer == [1] * len(customers)
    assert len(published.named(REFRESH)) == len(customers)


def test_one_hanging_customer_does_not_hold_up_the_others(simulator, worker, logs, settings):
    _, ran = logs
    settings.SITE24X7_READ_TIMEOUT = 0.5
    customers = legacy_customers(simulator)
    stuck = customers[0]
    fault(simulator, kind="hang", customer=stuck.zaid, hang_s=10)

    with worker():
        for customer in customers:
            refresh_customer.delay(customer.pk)
        wait_for(lambda: all(_fresh(c) for c in customers[1:]), what="the healthy customers")
        assert _reload(stuck).data_fetched_at is None
        wait_for(lambda: _reload(stuck).last_error_kind == "timeout")


# --- OAuth: one mint for everyone (REL-14) ------------------------------------------------------


@pytest.fixture(scope="module")
def big_simulator():
    from site24x7_simulator import Simulator

    sim = Simulator(customers=50, seed=11, port=0).start()
    yield sim
    sim.stop()


@pytest.mark.slow
def test_fifty_refreshes_with_no_usable_token_mint_once(big_simulator, settings):
    """REL-14 on both lock kinds: Redis SET NX in CI, a file lock on the demo's file cache."""
    sim = big_simulator
    sim_post(sim, "reset")
    settings.SITE24X7_API_URL = settings.SITE24X7_ACCOUNTS_URL = sim.url
    # Fifty client threads and the in-process simulator share one GIL on two cores: a call can
    # take over a second here, and this test is about one mint, not about timeouts.
    settings.SITE24X7_READ_TIMEOUT = 15.0
    credential = oauth_credential(sim)
    customer_sync(credential=credential)
    ids = list(Customer.objects.values_list("pk", flat=True))
    assert len(ids) == 50

    for make_unusable in (_forget_cached_token, _expire_tokens_upstream):
        make_unusable(sim, credential)
        sim_post(sim, "counters/reset")
        outcomes = _refresh_all_at_once(ids)
        counters = sim_get(sim, "counters")
        assert counters["mints"] <= 1, make_unusable.__name__
        failed = [(o.result, o.reason, o.error) for o in outcomes if o.result != "ok"]
        assert failed == [], make_unusable.__name__
        assert counters["requests"]["current_status"] <= 100

    credential.refresh_from_db()
    assert credential.state == CredentialState.ACTIVE


def _forget_cached_token(sim, credential):
    from django.core.cache import cache

    cache.clear()


def _expire_tokens_upstream(sim, credential):
    sim_post(sim, "oauth", {"expire_access_tokens": True})


def _refresh_all_at_once(ids):
    start = threading.Barrier(len(ids))
    results = {}

    def one(pk):
        try:
            start.wait()
            results[pk] = customer_refresh(customer_id=pk)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one, args=(pk,)) for pk in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return [results[pk] for pk in ids]


# --- call budget, circuit breaker ---------------------------------------------------------------


def test_call_budget_holds_across_workers(simulator, worker, logs, settings):
    _, ran = logs
    settings.SITE24X7_CALL_BUDGET = 2
    customers = legacy_customers(simulator, count=3)
    sim_post(simulator, "counters/reset")

    with worker():
        for done in range(1, 5):
            for customer in customers:
                refresh_customer.delay(customer.pk)
            wait_for(lambda done=done: ran.count(REFRESH) == done * len(customers))

    counters = sim_get(simulator, "counters")
    per_customer = [v["monitor_groups_status"] for v in counters["by_customer"].values()]
    assert per_customer == [2, 2, 2]  # each customer is its own account with its own budget
    assert all(_reload(c).last_error_kind == "budget" for c in customers)


@pytest.mark.slow
def test_breaker_opens_after_five_failures_and_makes_no_calls_while_open(
    simulator, worker, logs, settings
):
    _, ran = logs
    customer = legacy_customers(simulator, count=1)[0]
    fault(simulator, kind="status", http_status=500)

    with worker():
        refresh_customer.delay(customer.pk)  # one attempt and three retries
        wait_for(lambda: ran.count(REFRESH) == 1 + settings.REFRESH_MAX_RETRIES)
        refresh_customer.delay(customer.pk)  # the fifth failure opens the breaker
        wait_for(lambda: _reload(customer).paused_until is not None)
        wait_for(lambda: ran.count(REFRESH) == 2 + settings.REFRESH_MAX_RETRIES)
        assert calls(simulator, "monitor_groups_status") == 5

        for _ in range(3):
            refresh_customer.delay(customer.pk)
        refresh_due.delay()
        wait_for(lambda: ran.count(REFRESH) == 5 + settings.REFRESH_MAX_RETRIES)
        wait_for(lambda: ran.count(FANOUT) == 1)
        assert calls(simulator, "monitor_groups_status") == 5  # zero calls while paused

        sim_post(simulator, "faults/clear")
        Customer.objects.filter(pk=customer.pk).update(paused_until=timezone.now())
        refresh_due.delay()  # the pause is over: one half-open probe
        wait_for(lambda: _reload(customer).consecutive_failures == 0)

    assert calls(simulator, "monitor_groups_status") == 6
    assert _reload(customer).breaker_trips == 0
