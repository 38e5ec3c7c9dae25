"""The MSP-wide refresh source (issue 10, portals.wide): one GET /api/msp/customers/monitors/status
per MSP identity and round, against the simulator over HTTP, on a real broker (and a real worker
for the end-to-end round)."""

import logging
import os
from datetime import timedelta

import pytest
from django.utils import timezone

from msp_dashboard.celery import app
from portals.models import AuthGeneration, Customer, MonitorGroup
from portals.services import customers_enqueue_due
from portals.tasks import refresh_due
from portals.wide import customers_refresh_wide
from tokens.models import AuditAction, AuditEvent, CredentialState

from .refresh_support import (
    PublishLog,
    fault,
    grid_snapshot,
    isolate_file_cache,
    legacy_customers,
    oauth_customers,
    purge,
    sim_get,
    sim_post,
    thread_worker,
    use_test_broker,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

REFRESH = "portals.tasks.refresh_customer"
WIDE = "portals.tasks.refresh_wide"
ROUND = "r-test"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    use_test_broker(app, tmp_path_factory.mktemp("broker"), os.environ.get("REDIS_URL", ""))
    return app


@pytest.fixture(autouse=True)
def _settings(settings, tmp_path, broker):
    purge(broker)
    isolate_file_cache(settings, tmp_path)
    settings.REFRESH_INTERVAL = 4
    settings.REFRESH_STAGGER_FRACTION = 0
    settings.REFRESH_BACKOFF_BASE = 0.1
    settings.SITE24X7_READ_TIMEOUT = 5.0
    settings.SITE24X7_OAUTH_REFRESH_SOURCE = "msp_wide"


@pytest.fixture
def published():
    with PublishLog() as log:
        yield log


def _requests(sim) -> dict:
    return sim_get(sim, "counters")["requests"]


def _round(sim, settings, source: str, count: int) -> dict:
    """One beat round with the given OAuth refresh source; the upstream calls it made."""
    settings.SITE24X7_OAUTH_REFRESH_SOURCE = source
    Customer.objects.update(refresh_enqueued_at=None)  # past the per-round guard
    sim_post(sim, "counters/reset")
    started = timezone.now()
    refresh_due.delay()
    wait_for(
        lambda: Customer.objects.filter(data_fetched_at__gt=started).count() == count,
        what=f"a {source} round",
    )
    return _requests(sim)


def test_msp_wide_round_shows_the_same_grid_as_per_customer_calls(
    simulator, settings, admin_client, published
):
    customers = oauth_customers(simulator)
    with thread_worker(app):
        per_customer = _round(simulator, settings, "per_customer", len(customers))
        before = grid_snapshot(admin_client)
        changes = sim_post(simulator, "drift", {"steps": 6})["changes"]
        wide = _round(simulator, settings, "msp_wide", len(customers))
        after_wide = grid_snapshot(admin_client)
        again = _round(simulator, settings, "per_customer", len(customers))
        after_per_customer = grid_snapshot(admin_client)

    assert (per_customer["current_status"], per_customer["msp_monitors_status"]) == (8, 0)
    assert (wide["current_status"], wide["msp_monitors_status"]) == (0, 1)  # one call, 8 customers
    assert again["current_status"] == 8
    assert changes and after_wide != before  # the wide round wrote what changed upstream
    assert after_wide == after_per_customer  # ... exactly what each customer's own call reads
    wide_messages = published.named(WIDE)
    assert [m["args"] for m in wide_messages] == [
        [customers[0].msp_credential_id, wide_messages[0]["args"][1]]
    ]
    assert all(isinstance(a, (int, str)) and len(str(a)) <= 32 for a in wide_messages[0]["args"])


def _claim_all(round_id: str = ROUND) -> None:
    Customer.objects.update(refresh_round=round_id, refresh_enqueued_at=timezone.now())


def test_missing_and_busy_customers_get_their_own_call(simulator, published):
    customers = oauth_customers(simulator)
    credential = customers[0].msp_credential
    ghost = Customer.objects.create(
        name="Not listed upstream", auth_generation=AuthGeneration.OAUTH, zaaid="999000999",
        msp_credential=credential, data_centre="US",
    )  # fmt: skip
    busy = customers[1]
    Customer.objects.filter(pk=busy.pk).update(
        lease_until=timezone.now() + timedelta(seconds=20), lease_token="someone-else"
    )
    _claim_all()

    outcome = customers_refresh_wide(credential_id=credential.pk, round_id=ROUND)

    assert (outcome.result, outcome.stored, outcome.own_calls) == ("ok", len(customers) - 1, 2)
    assert _requests(simulator)["msp_monitors_status"] == 1
    handed = {m["args"][0]: published.delay_of(m) for m in published.named(REFRESH)}
    assert set(handed) == {ghost.pk, busy.pk}
    assert handed[ghost.pk] < 1 and 15 < handed[busy.pk] <= 22  # after the running refresh
    assert Customer.objects.get(pk=busy.pk).lease_token == "someone-else"  # not taken from it
    assert not Customer.objects.filter(lease_token__gt="").exclude(pk=busy.pk).exists()
    fresh = Customer.objects.filter(data_fetched_at__isnull=False)
    assert set(fresh.values_list("pk", flat=True)) == {c.pk for c in customers} - {busy.pk}
    assert MonitorGroup.objects.filter(customer_id=customers[0].pk).exists()


def test_an_endpoint_the_account_lacks_falls_back_to_per_customer_calls(
    simulator, published, caplog
):
    customers = oauth_customers(simulator)
    fault(simulator, kind="status", endpoint="msp_monitors_status", http_status=404)
    _claim_all()

    with caplog.at_level(logging.DEBUG):
        outcome = customers_refresh_wide(
            credential_id=customers[0].msp_credential_id, round_id=ROUND
        )

    assert (outcome.result, outcome.reason, outcome.own_calls) == ("failed", "fallback", 8)
    assert sorted(m["args"][0] for m in published.named(REFRESH)) == [c.pk for c in customers]
    assert not Customer.objects.exclude(last_error="").exists()  # nobody blamed for it
    assert not Customer.objects.filter(lease_token__gt="").exists()
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("MSP-wide call cannot be used" in m and "8 customers" in m for m in warning)
    secrets = sim_get(simulator, "credentials")
    assert not any(secrets["client_secret"] in r.getMessage() for r in caplog.records)


def test_a_server_error_keeps_every_customers_data_and_retries_once_for_all(simulator, published):
    customers = oauth_customers(simulator)
    credential_id = customers[0].msp_credential_id
    _claim_all()
    assert customers_refresh_wide(credential_id=credential_id, round_id=ROUND).stored == 8
    groups_before = MonitorGroup.objects.count()
    fault(simulator, kind="status", endpoint="msp_monitors_status", http_status=503)
    _claim_all("r-second")

    outcome = customers_refresh_wide(credential_id=credential_id, round_id="r-second")

    assert (outcome.result, outcome.reason) == ("failed", "server")
    assert outcome.retry_in is not None and outcome.retry_in >= 0
    assert MonitorGroup.objects.count() == groups_before  # previous data kept
    rows = Customer.objects.all()
    assert {(c.last_error_kind, c.consecutive_failures) for c in rows} == {("server", 1)}
    assert all(c.last_attempt_at > c.data_fetched_at for c in rows)  # shown as not fresh
    assert published.named(REFRESH) == []  # the one task retries, not 8 customers


def test_a_rejected_identity_is_marked_invalid_once(simulator):
    customers = oauth_customers(simulator)
    credential = customers[0].msp_credential
    fault(simulator, kind="invalid_token", endpoint="msp_monitors_status")
    _claim_all()

    outcome = customers_refresh_wide(credential_id=credential.pk, round_id=ROUND)

    assert (outcome.result, outcome.reason, outcome.retry_in) == ("failed", "auth", None)
    credential.refresh_from_db()
    assert credential.state == CredentialState.INVALID
    invalidated = AuditEvent.objects.filter(action=AuditAction.CREDENTIAL_INVALID)
    assert invalidated.count() == 1
    assert _requests(simulator)["msp_monitors_status"] == 2  # once more with a fresh token
    assert set(Customer.objects.values_list("last_error_kind", flat=True)) == {"auth"}


def test_a_spent_call_budget_makes_no_call(simulator, settings):
    settings.SITE24X7_CALL_BUDGETS = {"msp_monitors_status": 1}
    customers = oauth_customers(simulator)
    credential_id = customers[0].msp_credential_id
    _claim_all()
    assert customers_refresh_wide(credential_id=credential_id, round_id=ROUND).result == "ok"
    _claim_all("r-second")

    outcome = customers_refresh_wide(credential_id=credential_id, round_id="r-second")

    assert (outcome.result, outcome.reason) == ("failed", "budget")
    assert _requests(simulator)["msp_monitors_status"] == 1
    assert {c.last_error_kind for c in Customer.objects.all()} == {"budget"}


def test_the_round_sends_oauth_customers_to_one_wide_task_and_legacy_ones_to_their_own(
    simulator, published
):
    legacy = legacy_customers(simulator, count=3)
    oauth = [c for c in oauth_customers(simulator) if c.auth_generation == AuthGeneration.OAUTH]

    enqueued = customers_enqueue_due()

    assert enqueued == len(legacy) + len(oauth)
    assert sorted(m["args"][0] for m in published.named(REFRESH)) == sorted(c.pk for c in legacy)
    (wide,) = published.named(WIDE)
    round_id = Customer.objects.get(pk=oauth[0].pk).refresh_round
    assert wide["args"] == [oauth[0].msp_credential_id, round_id]
    assert wide["headers"]["expires"]
