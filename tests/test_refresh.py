"""The refresh service (issue 4), without a worker: one customer at a time, over real HTTP
against the simulator and its fault injection."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from msp_dashboard.site24x7 import GroupStatus, Status
from portals.models import Customer, MonitorGroup, StatusChange
from portals.services import (
    RefreshResult,
    backoff_delay,
    customer_refresh,
    customer_store_groups,
    customers_due,
    customers_refresh_batch,
    lease_timeout,
)
from tokens.models import AuditAction, AuditEvent, CredentialState
from tokens.services import credential_secret

from .refresh_support import (
    calls,
    fault,
    isolate_file_cache,
    legacy_customers,
    oauth_customers,
    sim_get,
    sim_post,
    upstream_of,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_cache(settings, tmp_path):
    isolate_file_cache(settings, tmp_path)


CANARY_GROUPS = [
    GroupStatus("g1", "Websites", Status.UP, 3, 0, True),
    GroupStatus("g2", "Servers", Status.DOWN, 2, 1, True),
    GroupStatus("g3", "Servers - EU", Status.DOWN, 1, 1, False),
]


@pytest.fixture
def legacy(simulator):
    """One legacy customer with a portal authtoken created through the simulator."""
    return legacy_customers(simulator, count=1)[0]


@pytest.fixture
def oauth(simulator):
    return oauth_customers(simulator)[0]


def _expected_worst(upstream: dict, *, all_top: bool = False) -> int:
    """current_status (OAuth) reports every group as a top group (wire contract)."""
    tops = [g["status"] for g in upstream["groups"] if g["top_group"] or all_top]
    return min(tops, key=lambda s: Status(s).severity)


def _reload(customer) -> Customer:
    return Customer.objects.get(pk=customer.pk)


# --- the fresh path -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["legacy", "oauth"])
def test_refresh_stores_groups_worst_status_and_outcome(request, simulator, kind):
    customer = request.getfixturevalue(kind)
    sim_post(simulator, "counters/reset")

    outcome = customer_refresh(customer_id=customer.pk)

    upstream = upstream_of(simulator, customer)
    assert outcome.result == RefreshResult.OK
    assert outcome.groups == len(upstream["groups"])
    stored = {g.group_id: g for g in MonitorGroup.objects.filter(customer=customer)}
    assert set(stored) == {g["group_id"] for g in upstream["groups"]}
    for group in upstream["groups"]:
        assert stored[group["group_id"]].status == group["status"]
        assert stored[group["group_id"]].top_group == (group["top_group"] or kind == "oauth")
    customer = _reload(customer)
    assert customer.worst_status == _expected_worst(upstream, all_top=kind == "oauth")
    assert customer.data_fetched_at == customer.last_attempt_at
    assert customer.last_success_at >= customer.data_fetched_at
    assert customer.worst_status_since and customer.last_duration is not None
    assert (customer.last_error, customer.consecutive_failures) == ("", 0)
    assert customer.lease_until is None
    endpoint = "monitor_groups_status" if kind == "legacy" else "current_status"
    assert calls(simulator, endpoint) == 1


def test_second_refresh_records_no_change_and_moves_fetched_at_forward(legacy):
    customer_refresh(customer_id=legacy.pk)
    first = _reload(legacy)
    changes = StatusChange.objects.count()
    updated = dict(MonitorGroup.objects.values_list("group_id", "updated_at"))

    customer_refresh(customer_id=legacy.pk)

    second = _reload(legacy)
    assert second.data_fetched_at > first.data_fetched_at
    assert StatusChange.objects.count() == changes
    assert dict(MonitorGroup.objects.values_list("group_id", "updated_at")) == updated
    assert second.worst_status_since == first.worst_status_since


def test_fetching_the_same_groups_again_neither_reads_nor_writes_them(legacy):
    """The customer row keeps a hash of the groups last stored: the same groups fetched again
    (in any order) cost no group query; any difference (a name) is stored as before."""
    groups = [GroupStatus(f"g{i}", f"G{i}", Status.UP, 2, 0, True) for i in range(5)]
    now = timezone.now()

    def store(fetched, at) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            assert customer_store_groups(customer_id=legacy.pk, groups=fetched, started=at)
        return [q["sql"] for q in queries if "portals_monitorgroup" in q["sql"]]

    assert store(groups, now)  # the first time: read and written
    assert store(list(reversed(groups)), now + timedelta(seconds=1)) == []
    assert _reload(legacy).data_fetched_at == now + timedelta(seconds=1)
    renamed = [*groups[:4], GroupStatus("g4", "Renamed", Status.UP, 2, 0, True)]
    assert store(renamed, now + timedelta(seconds=2))
    assert MonitorGroup.objects.get(customer=legacy, group_id="g4").name == "Renamed"
    assert MonitorGroup.objects.filter(customer=legacy).count() == 5


def test_status_changes_are_recorded(simulator, legacy):
    customer_refresh(customer_id=legacy.pk)
    upstream = upstream_of(simulator, legacy)
    group = next(g for g in upstream["groups"] if g["top_group"])
    new_status = Status.DOWN if group["status"] != Status.DOWN else Status.UP
    sim_post(
        simulator,
        "status",
        {"customer": legacy.zaid, "group_id": group["group_id"], "status": int(new_status)},
    )
    before = _reload(legacy)
    first_changes = set(StatusChange.objects.values_list("pk", flat=True))

    customer_refresh(customer_id=legacy.pk)

    new = StatusChange.objects.exclude(pk__in=first_changes)
    group_change = new.get(group_id=group["group_id"])
    assert (group_change.from_status, group_change.to_status) == (group["status"], new_status)
    assert group_change.group_name == group["name"]
    stored = MonitorGroup.objects.get(customer=legacy, group_id=group["group_id"])
    assert stored.status == new_status and stored.status_since == group_change.at
    after = _reload(legacy)
    if after.worst_status != before.worst_status:
        level = new.get(group_id="")
        assert (level.from_status, level.to_status) == (before.worst_status, after.worst_status)
        assert after.worst_status_since == level.at


def test_first_refresh_records_where_history_starts(legacy):
    customer_refresh(customer_id=legacy.pk)
    groups = MonitorGroup.objects.filter(customer=legacy).count()
    changes = StatusChange.objects.filter(customer=legacy)
    assert changes.filter(from_status=None).count() == groups + 1
    assert changes.get(group_id="").to_status == _reload(legacy).worst_status


# --- storing: upsert, vanished groups, fencing, constant queries --------------------------------


def test_store_upserts_removes_vanished_groups_and_uses_top_groups(legacy):
    now = timezone.now()
    assert customer_store_groups(customer_id=legacy.pk, groups=CANARY_GROUPS, started=now)
    assert _reload(legacy).worst_status == Status.DOWN

    later = [GroupStatus("g1", "Websites", Status.TROUBLE, 3, 1, True)]
    assert customer_store_groups(
        customer_id=legacy.pk, groups=later, started=now + timedelta(seconds=1)
    )

    assert list(MonitorGroup.objects.filter(customer=legacy).values_list("group_id", "status")) == [
        ("g1", Status.TROUBLE)
    ]
    assert _reload(legacy).worst_status == Status.TROUBLE
    level = StatusChange.objects.filter(customer=legacy, group_id="").first()
    assert (level.from_status, level.to_status) == (Status.DOWN, Status.TROUBLE)


def test_an_older_result_is_ignored(legacy):
    """REL-01 fencing: a result whose fetch started before the stored one's is dropped."""
    now = timezone.now()
    customer_store_groups(customer_id=legacy.pk, groups=CANARY_GROUPS, started=now)
    before = _reload(legacy)
    changes = StatusChange.objects.count()

    older = [GroupStatus("g9", "Old", Status.UP, 1, 0, True)]
    stored = customer_store_groups(
        customer_id=legacy.pk, groups=older, started=now - timedelta(seconds=5)
    )

    assert stored is False
    assert _reload(legacy).data_fetched_at == before.data_fetched_at == now
    assert set(MonitorGroup.objects.values_list("group_id", flat=True)) == {"g1", "g2", "g3"}
    assert StatusChange.objects.count() == changes
    # The same fetch time again is not newer either.
    assert not customer_store_groups(customer_id=legacy.pk, groups=older, started=now)


def test_store_runs_the_same_queries_for_3_and_100_groups(legacy):
    def store(count: int, status: Status, at) -> int:
        groups = [GroupStatus(f"g{i}", f"G{i}", status, 1, 0, True) for i in range(count)]
        with CaptureQueriesContext(connection) as queries:
            customer_store_groups(customer_id=legacy.pk, groups=groups, started=at)
        return len(queries)

    now = timezone.now()
    small = [store(3, Status.UP, now), store(3, Status.DOWN, now + timedelta(seconds=1))]
    MonitorGroup.objects.all().delete()
    Customer.objects.filter(pk=legacy.pk).update(data_fetched_at=None)
    large = [
        store(100, Status.UP, now + timedelta(seconds=2)),
        store(100, Status.DOWN, now + timedelta(seconds=3)),
    ]
    assert small == large
    assert max(large) <= 9


# --- failures -----------------------------------------------------------------------------------


def _fresh(customer) -> Customer:
    assert customer_refresh(customer_id=customer.pk).result == RefreshResult.OK
    return _reload(customer)


def test_server_error_keeps_data_and_asks_for_a_retry(simulator, legacy):
    before = _fresh(legacy)
    groups = MonitorGroup.objects.count()
    fault(simulator, kind="status", http_status=503, count=1)

    outcome = customer_refresh(customer_id=legacy.pk)

    assert (outcome.result, outcome.reason) == (RefreshResult.FAILED, "server")
    assert outcome.retry_in is not None
    after = _reload(legacy)
    assert after.last_success_at == before.last_success_at  # never marked fresh
    assert after.data_fetched_at == before.data_fetched_at
    assert after.last_error_kind == "server" and "503" in after.last_error
    assert after.consecutive_failures == 1
    assert MonitorGroup.objects.count() == groups  # previous groups kept


def test_throttled_customer_waits_for_retry_after(simulator, legacy):
    fault(simulator, kind="throttle", calls=0, lock_s=30, retry_after=30)

    outcome = customer_refresh(customer_id=legacy.pk)

    assert outcome.reason == "throttled"
    assert outcome.retry_in is not None and outcome.retry_in >= 30
    customer = _reload(legacy)
    assert customer.throttled_until >= customer.last_attempt_at + timedelta(seconds=29)
    assert not customers_due(now=timezone.now()).filter(pk=legacy.pk).exists()
    assert customer_refresh(customer_id=legacy.pk).reason == "throttled"  # no call
    assert calls(simulator, "monitor_groups_status") == 1


def test_retry_after_beyond_the_backoff_cap_is_left_to_the_next_round(simulator, legacy, settings):
    settings.REFRESH_BACKOFF_MAX = 5
    fault(simulator, kind="status", http_status=429, retry_after=60, count=1)

    outcome = customer_refresh(customer_id=legacy.pk)

    assert outcome.reason == "throttled" and outcome.retry_in is None
    assert _reload(legacy).throttled_until > timezone.now() + timedelta(seconds=55)


def test_no_retry_after_the_last_attempt(simulator, legacy, settings):
    fault(simulator, kind="reset")
    assert customer_refresh(customer_id=legacy.pk, attempt=2).retry_in is not None
    last = customer_refresh(customer_id=legacy.pk, attempt=settings.REFRESH_MAX_RETRIES)
    assert last.reason == "connection" and last.retry_in is None


def test_malformed_payload_keeps_data_and_stores_a_short_error(simulator, legacy):
    before = _fresh(legacy)
    groups = list(MonitorGroup.objects.values_list("group_id", "status"))
    fault(simulator, kind="malformed", count=1)

    outcome = customer_refresh(customer_id=legacy.pk)

    assert (outcome.reason, outcome.retry_in) == ("response", None)
    after = _reload(legacy)
    assert after.last_error_kind == "response" and 0 < len(after.last_error) <= 200
    assert list(MonitorGroup.objects.values_list("group_id", "status")) == groups
    assert after.data_fetched_at == before.data_fetched_at


def test_rejected_authtoken_invalidates_the_credential_and_stops_polling(simulator, legacy):
    fault(simulator, kind="invalid_token")

    outcome = customer_refresh(customer_id=legacy.pk)

    assert (outcome.reason, outcome.retry_in) == ("auth", None)
    credential = legacy.credentials.get()
    assert credential.state == CredentialState.INVALID
    event = AuditEvent.objects.get(action=AuditAction.CREDENTIAL_INVALID)
    assert event.customer_id == legacy.pk
    assert not customers_due(now=timezone.now()).filter(pk=legacy.pk).exists()
    assert customer_refresh(customer_id=legacy.pk).reason == "no credential"
    assert calls(simulator, "monitor_groups_status") == 1
    assert _reload(legacy).consecutive_failures == 0  # not the breaker's business


def test_oauth_rejected_token_is_replaced_once_then_the_identity_is_blamed(simulator, oauth):
    sim_post(simulator, "counters/reset")
    fault(simulator, kind="invalid_token", endpoint="current_status", count=1)

    assert customer_refresh(customer_id=oauth.pk).result == RefreshResult.OK
    assert calls(simulator, "oauth_token") == 1  # one replacement minted

    fault(simulator, kind="invalid_token", endpoint="current_status", count=2)
    outcome = customer_refresh(customer_id=oauth.pk)

    assert outcome.reason == "auth"
    assert _reload(oauth).msp_credential.state == CredentialState.INVALID
    assert calls(simulator, "current_status") == 4
    assert not customers_due(now=timezone.now()).exists()  # one identity reads them all


def test_oauth_forbidden_customer_does_not_blame_the_identity(simulator, oauth):
    fault(simulator, kind="status", http_status=403, endpoint="current_status", count=1)

    outcome = customer_refresh(customer_id=oauth.pk)

    assert (outcome.reason, outcome.retry_in) == ("forbidden", None)
    assert _reload(oauth).msp_credential.state == CredentialState.ACTIVE
    assert _reload(oauth).consecutive_failures == 1


def test_error_text_never_holds_the_token(simulator, legacy):
    secret = credential_secret(legacy.credentials.get())
    for kind in ("html", "malformed", "invalid_token"):
        fault(simulator, kind=kind, http_status=502, count=1)
        customer_refresh(customer_id=legacy.pk)
        customer = _reload(legacy)
        assert customer.last_error and secret not in customer.last_error
        assert secret[-8:] not in customer.last_error


# --- the overlap guard (lease) ------------------------------------------------------------------


def test_a_held_lease_skips_without_calling_upstream(simulator, legacy):
    future = timezone.now() + lease_timeout()
    Customer.objects.filter(pk=legacy.pk).update(lease_until=future, lease_token="x" * 32)

    outcome = customer_refresh(customer_id=legacy.pk)

    assert (outcome.result, outcome.reason) == (RefreshResult.SKIPPED, "already running")
    assert calls(simulator, "monitor_groups_status") == 0
    assert _reload(legacy).lease_token == "x" * 32  # not ours to release


def test_a_lease_left_by_a_killed_worker_expires(simulator, legacy):
    now = timezone.now()
    Customer.objects.filter(pk=legacy.pk).update(lease_until=now + lease_timeout(), lease_token="k")

    with time_machine.travel(now + lease_timeout() + timedelta(seconds=1)):
        outcome = customer_refresh(customer_id=legacy.pk)

    assert outcome.result == RefreshResult.OK
    assert _reload(legacy).lease_until is None


def test_a_batch_takes_its_leases_in_one_statement_and_skips_a_held_one(simulator):
    """REL-02 for a batch: one UPDATE takes every free lease; a customer whose lease another
    refresh holds is skipped without a call and keeps that lease; the others are stored and
    their leases released."""
    customers = legacy_customers(simulator, count=4)
    held = customers[1]
    future = timezone.now() + lease_timeout()
    Customer.objects.filter(pk=held.pk).update(lease_until=future, lease_token="x" * 32)
    sim_post(simulator, "counters/reset")

    with CaptureQueriesContext(connection) as queries:
        outcomes = customers_refresh_batch(customer_ids=[c.pk for c in customers])

    lease_updates = [q for q in queries if '"lease_token" = ' in q["sql"] and "UPDATE" in q["sql"]]
    taking = [q for q in lease_updates if '"lease_until" IS NULL' in q["sql"]]
    assert len(taking) == 1  # the whole batch's leases
    results = {o.customer_id: (o.result, o.reason) for o in outcomes}
    assert results.pop(held.pk) == (RefreshResult.SKIPPED, "already running")
    assert set(results.values()) == {(RefreshResult.OK, "")}
    assert calls(simulator, "monitor_groups_status") == 3
    assert _reload(held).lease_token == "x" * 32  # not ours to release
    free = Customer.objects.filter(pk__in=[c.pk for c in customers]).exclude(pk=held.pk)
    assert not free.exclude(lease_token="").exists() and not free.filter(data_fetched_at=None)


def test_lease_timeout_outlives_the_hard_time_limit(settings):
    assert lease_timeout().total_seconds() == settings.TASK_TIME_LIMIT + 10


# --- circuit breaker ----------------------------------------------------------------------------


def test_breaker_opens_after_five_failures_pauses_then_probes(simulator, legacy, settings):
    settings.BREAKER_PAUSE, settings.BREAKER_PAUSE_MAX = 900, 3600
    fault(simulator, kind="status", http_status=500)
    start = timezone.now()
    with time_machine.travel(start, tick=True) as clock:
        for _ in range(5):
            customer_refresh(customer_id=legacy.pk, attempt=3)
        customer = _reload(legacy)
        assert customer.consecutive_failures == 5 and customer.breaker_trips == 1
        assert customer.paused_until >= start + timedelta(seconds=899)
        assert calls(simulator, "monitor_groups_status") == 5

        assert customer_refresh(customer_id=legacy.pk).reason == "paused"
        assert not customers_due(now=timezone.now()).filter(pk=legacy.pk).exists()
        assert calls(simulator, "monitor_groups_status") == 5  # zero calls while paused

        clock.move_to(customer.paused_until + timedelta(seconds=1))
        assert customers_due(now=timezone.now()).filter(pk=legacy.pk).exists()
        probe = customer_refresh(customer_id=legacy.pk)  # half-open: one probe, it fails
        assert probe.retry_in is None
        customer = _reload(legacy)
        assert customer.breaker_trips == 2
        assert customer.paused_until >= timezone.now() + timedelta(seconds=1799)  # doubled

        sim_post(simulator, "faults/clear")
        clock.move_to(customer.paused_until + timedelta(seconds=1))
        assert customer_refresh(customer_id=legacy.pk).result == RefreshResult.OK
        customer = _reload(legacy)
        assert (customer.consecutive_failures, customer.breaker_trips) == (0, 0)
        assert customer.paused_until is None


def test_breaker_pause_is_capped(simulator, legacy, settings):
    settings.BREAKER_PAUSE, settings.BREAKER_PAUSE_MAX = 900, 3600
    Customer.objects.filter(pk=legacy.pk).update(consecutive_failures=9, breaker_trips=6)
    fault(simulator, kind="status", http_status=500, count=1)
    customer_refresh(customer_id=legacy.pk)
    customer = _reload(legacy)
    assert customer.paused_until <= timezone.now() + timedelta(seconds=3600)


def test_manual_refresh_probes_a_paused_customer(simulator, legacy):
    paused_until = timezone.now() + timedelta(minutes=10)
    Customer.objects.filter(pk=legacy.pk).update(
        consecutive_failures=5, breaker_trips=1, paused_until=paused_until
    )
    assert customer_refresh(customer_id=legacy.pk).reason == "paused"

    fault(simulator, kind="status", http_status=500, count=1)
    customer_refresh(customer_id=legacy.pk, manual=True)
    customer = _reload(legacy)
    assert (customer.paused_until, customer.breaker_trips) == (paused_until, 1)  # unchanged

    assert customer_refresh(customer_id=legacy.pk, manual=True).result == RefreshResult.OK
    assert _reload(legacy).paused_until is None


# --- call budget --------------------------------------------------------------------------------


def test_budget_is_never_exceeded_and_counts_per_customer(simulator, settings):
    settings.SITE24X7_CALL_BUDGET, settings.SITE24X7_CALL_BUDGET_WINDOW = 3, 300
    first, second = legacy_customers(simulator, count=2)
    sim_post(simulator, "counters/reset")

    outcomes = [customer_refresh(customer_id=first.pk) for _ in range(6)]

    assert [o.result for o in outcomes[:3]] == [RefreshResult.OK] * 3
    assert {o.reason for o in outcomes[3:]} <= {"budget", "throttled"}
    assert calls(simulator, "monitor_groups_status") <= 3
    spent = _reload(first)
    assert spent.last_error_kind == "budget" and spent.throttled_until > timezone.now()
    assert spent.consecutive_failures == 0  # not an upstream failure
    # Another customer (another account) has its own budget.
    assert customer_refresh(customer_id=second.pk).result == RefreshResult.OK


def test_budget_window_rolls_over(simulator, settings):
    settings.SITE24X7_CALL_BUDGET, settings.SITE24X7_CALL_BUDGET_WINDOW = 2, 60
    customer = legacy_customers(simulator, count=1)[0]
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        assert customer_refresh(customer_id=customer.pk).result == RefreshResult.OK
        clock.shift(1)
        assert customer_refresh(customer_id=customer.pk).result == RefreshResult.OK
        clock.shift(1)
        assert customer_refresh(customer_id=customer.pk).reason == "budget"
        clock.move_to(_reload(customer).throttled_until + timedelta(seconds=1))
        assert customer_refresh(customer_id=customer.pk).result == RefreshResult.OK


# --- small pure pieces --------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_the_cap(settings):
    settings.REFRESH_BACKOFF_BASE, settings.REFRESH_BACKOFF_MAX = 2.0, 300.0
    for attempt in range(12):
        delays = [backoff_delay(attempt) for _ in range(50)]
        assert all(0 <= d <= min(300.0, 2.0 * 2**attempt) for d in delays)
    assert max(backoff_delay(20) for _ in range(200)) > 150  # spread up to the cap


def test_inactive_or_unknown_customers_are_skipped(legacy):
    Customer.objects.filter(pk=legacy.pk).update(is_active=False)
    assert customer_refresh(customer_id=legacy.pk).reason == "inactive"
    assert customer_refresh(customer_id=987654).reason == "inactive"


# --- the Site24x7 switches (issue 10) are honoured ----------------------------------------------


def test_customer_selector_follows_the_switches(simulator, settings):
    settings.SITE24X7_ZAID_VIA, settings.SITE24X7_ZAAID_VIA = "cookie", "param"
    legacy = legacy_customers(simulator, count=1)[0]
    Customer.objects.exclude(pk=legacy.pk).delete()
    oauth = oauth_customers(simulator)[-1]
    assert customer_refresh(customer_id=legacy.pk).result == RefreshResult.OK
    assert customer_refresh(customer_id=oauth.pk).result == RefreshResult.OK
    counters = sim_get(simulator, "counters")
    assert counters["zaid_via"] == {"cookie": 1, "param": 0}
    assert counters["zaaid_via"] == {"cookie": 0, "param": 1}


def test_budget_per_endpoint_follows_the_switch(simulator, settings):
    settings.SITE24X7_CALL_BUDGETS = {"monitor_groups_status": 1}
    customer = legacy_customers(simulator, count=1)[0]
    assert customer_refresh(customer_id=customer.pk).result == RefreshResult.OK
    assert customer_refresh(customer_id=customer.pk).reason == "budget"
    assert calls(simulator, "monitor_groups_status") == 1
