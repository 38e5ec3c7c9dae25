"""What keeps a refresh cheap (issue 7, benchmarks/refresh_cycle.py), asserted without timing:
the statements one refresh sends, the lease released with the outcome in one UPDATE, the call
budget counted in one Redis round trip, a round started all at once when asked, and database
connections kept across a worker's tasks."""

import contextlib
import os
import time

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_prerun
from django.core.cache import cache, caches
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from msp_dashboard.celery import app
from portals.limits import budget_key
from portals.models import Customer
from portals.services import customer_refresh, customers_enqueue_due, customers_refresh_batch
from portals.tasks import refresh_customer

from .refresh_support import (
    PublishLog,
    RunLog,
    calls,
    fault,
    isolate_file_cache,
    legacy_customers,
    purge,
    sim_post,
    use_test_broker,
    wait_for,
)

REFRESH = "portals.tasks.refresh_customer"


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    isolate_file_cache(settings, tmp_path)
    settings.SITE24X7_READ_TIMEOUT = 2.0
    settings.REFRESH_BACKOFF_BASE = 0.1


def _customer_updates(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].startswith('UPDATE "portals_customer"')]


def _reload(customer) -> Customer:
    return Customer.objects.get(pk=customer.pk)


# --- statements per refresh ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_steady_refresh_sends_few_statements_and_one_outcome_update(simulator):
    customer = legacy_customers(simulator, count=1)[0]
    assert customer_refresh(customer_id=customer.pk).result == "ok"  # groups now stored

    with CaptureQueriesContext(connection) as queries:
        assert customer_refresh(customer_id=customer.pk).result == "ok"

    # Read customer and credential, take the lease, then one transaction: lock the row, read
    # the groups, write the outcome (and release the lease in the same UPDATE).
    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) <= 7, statements
    updates = _customer_updates(queries.captured_queries)
    assert len(updates) == 2  # the lease, then outcome + release
    assert '"lease_token"' in updates[1] and '"last_success_at"' in updates[1]
    row = _reload(customer)
    assert row.lease_until is None and row.lease_token == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"kind": "status", "http_status": 500}, "server"),  # transient, retried later
        ({"kind": "invalid_token"}, "auth"),  # the credential is marked invalid
    ],
)
def test_a_failure_releases_the_lease_with_its_outcome(simulator, spec, reason):
    customer = legacy_customers(simulator, count=1)[0]
    fault(simulator, count=1, **spec)

    with CaptureQueriesContext(connection) as queries:
        outcome = customer_refresh(customer_id=customer.pk)

    assert (outcome.result, outcome.reason) == ("failed", reason)
    assert len(_customer_updates(queries.captured_queries)) == 2
    row = _reload(customer)
    assert row.lease_until is None and row.lease_token == ""
    assert row.last_error_kind == reason


@pytest.mark.django_db
def test_a_spent_budget_releases_the_lease_with_its_outcome(simulator, settings):
    settings.SITE24X7_CALL_BUDGET = 1
    customer = legacy_customers(simulator, count=1)[0]
    assert customer_refresh(customer_id=customer.pk).result == "ok"

    outcome = customer_refresh(customer_id=customer.pk)

    assert (outcome.result, outcome.reason) == ("failed", "budget")
    row = _reload(customer)
    assert row.lease_until is None and row.lease_token == ""


@pytest.mark.django_db
def test_an_ignored_result_still_releases_the_lease(simulator):
    customer = legacy_customers(simulator, count=1)[0]
    later = timezone.now() + timezone.timedelta(hours=1)
    Customer.objects.filter(pk=customer.pk).update(data_fetched_at=later)  # newer data stored

    outcome = customer_refresh(customer_id=customer.pk)

    assert outcome.result == "ignored"
    row = _reload(customer)
    assert row.lease_until is None and row.lease_token == ""
    assert row.data_fetched_at == later


# --- the call budget in one round trip -----------------------------------------------------------


@pytest.mark.django_db
def test_the_budget_counter_is_the_caches_own_with_a_ttl(simulator, settings, redis_url):
    customer = legacy_customers(simulator, count=1)[0]
    window = settings.SITE24X7_CALL_BUDGET_WINDOW
    credential_id = customer.credentials.get().pk
    index = int(time.time() // window)
    keys = [
        f"{budget_key(credential_id=credential_id, endpoint=endpoint, account=customer.pk)}:{i}"
        for endpoint in ("monitor_groups_status",)
        for i in (index, index + 1)  # the window may turn during the refresh
    ]

    assert customer_refresh(customer_id=customer.pk).result == "ok"

    counted = [key for key in keys if cache.get(key)]
    assert len(counted) == 1 and cache.get(counted[0]) == 1
    backend = caches["default"]
    raw = backend._cache.get_client(write=True)
    ttl = raw.ttl(backend.make_and_validate_key(counted[0]))
    assert 0 < ttl <= 2 * window + 5


@pytest.mark.django_db
def test_a_batch_refuses_the_call_of_a_customer_whose_budget_is_spent(simulator, settings):
    """A batch counts its calls' budget units up front; a customer whose budget is spent
    makes no call, fails with reason "budget" and is released; the others go ahead."""
    settings.SITE24X7_CALL_BUDGET = 1
    customers = legacy_customers(simulator, count=3)
    spent = customers[0]
    assert customer_refresh(customer_id=spent.pk).result == "ok"  # its one unit
    sim_post(simulator, "counters/reset")

    outcomes = customers_refresh_batch(customer_ids=[c.pk for c in customers])

    results = {o.customer_id: (o.result, o.reason) for o in outcomes}
    assert results.pop(spent.pk) == ("failed", "budget")
    assert set(results.values()) == {("ok", "")}
    assert calls(simulator, "monitor_groups_status") == 2
    assert not Customer.objects.filter(pk__in=[c.pk for c in customers]).exclude(lease_token="")


@pytest.mark.django_db
def test_a_batch_counts_its_budget_units_in_one_round_trip(simulator, redis_url):
    customers = legacy_customers(simulator, count=3)
    client = caches["default"]._cache.get_client(write=True)  # kept: the one limits uses
    sent, original = [], client.pipeline
    client.pipeline = lambda *a, **k: sent.append(k) or original(*a, **k)  # a spy, not a stub
    try:
        outcomes = customers_refresh_batch(customer_ids=[c.pk for c in customers])
    finally:
        del client.pipeline
    assert [o.result for o in outcomes] == ["ok"] * 3
    assert sent == [{"transaction": True}]  # one MULTI for the three calls


@pytest.mark.django_db
@pytest.mark.parametrize("generation", ["legacy", "oauth"])
def test_a_batch_reads_an_msp_identity_only_for_oauth_customers(simulator, generation):
    """A batch reads its customers without joining the credentials, then their credentials in
    one query: the legacy customers' portal authtokens, or the OAuth customers' MSP identity
    (not one query per customer)."""
    from .refresh_support import oauth_customers

    found = legacy_customers(simulator, count=3) if generation == "legacy" else None
    found = found or oauth_customers(simulator)[:3]
    with CaptureQueriesContext(connection) as queries:
        outcomes = customers_refresh_batch(customer_ids=[c.pk for c in found])
    assert [o.result for o in outcomes] == ["ok"] * 3
    reads = [q["sql"] for q in queries if q["sql"].startswith("SELECT")]
    first = reads[0]
    assert 'FROM "portals_customer"' in first and "JOIN" not in first
    credential_reads = [sql for sql in reads if 'FROM "tokens_credential"' in sql]
    assert len(credential_reads) == 1  # the portal authtokens, or the MSP identity


# --- a round all at once -------------------------------------------------------------------------


@pytest.mark.django_db
def test_stagger_fraction_zero_starts_a_round_at_once(
    simulator, settings, tmp_path_factory, monkeypatch
):
    use_test_broker(app, tmp_path_factory.mktemp("broker"), os.environ.get("REDIS_URL", ""))
    settings.REFRESH_INTERVAL = 300
    settings.REFRESH_STAGGER_FRACTION = 0
    customers = legacy_customers(simulator, count=3)
    try:
        with PublishLog() as published:
            assert customers_enqueue_due() == 3
        messages = published.named(REFRESH)
        assert sorted(m["args"][0] for m in messages) == sorted(c.pk for c in customers)
        assert all(published.delay_of(m) == 0 for m in messages)
        assert all(m["headers"]["expires"] for m in messages)
    finally:
        purge(app)


# --- database connections kept across tasks -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_a_worker_thread_keeps_its_database_connection_across_tasks(
    simulator, settings, tmp_path_factory, monkeypatch
):
    """Celery's Django fixup would close it around every task (a new PostgreSQL connection
    per refresh); CONN_MAX_AGE governs it instead."""
    monkeypatch.setitem(settings.DATABASES["default"], "CONN_MAX_AGE", 60)
    use_test_broker(app, tmp_path_factory.mktemp("broker"), os.environ.get("REDIS_URL", ""))
    purge(app)
    customer = legacy_customers(simulator, count=1)[0]
    open_at_start: list[bool] = []

    def record(task=None, **_):
        if task is not None and task.name == REFRESH:
            open_at_start.append(connection.connection is not None)

    task_prerun.connect(record, weak=False)
    try:
        with RunLog() as ran, contextlib.ExitStack() as stack:
            stack.enter_context(
                start_worker(app, pool="threads", concurrency=1, perform_ping_check=False,
                             loglevel="WARNING", shutdown_timeout=15)
            )  # fmt: skip
            for done in (1, 2):
                refresh_customer.delay(customer.pk)
                wait_for(lambda n=done: ran.count(REFRESH) == n, what=f"refresh {done}")
    finally:
        task_prerun.disconnect(record)
        purge(app)
    # One thread: its second task starts with the connection the first one used.
    assert open_at_start == [False, True]
