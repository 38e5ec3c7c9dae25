"""The alert engine on a frozen clock: transitions of a customer's worst status and of its
groups, hold-for-N-refreshes flap suppression (global and per channel), flapping, recovery
notices, acknowledgements (suppress, end on recovery or worsening, expire) and mutes.
Refreshes go through the real services (portals.services.customer_store_groups and, over
HTTP against the simulator, customer_refresh); deliveries go to a real HTTP listener."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.models import (
    AlertEvent,
    AlertState,
    Delivery,
    DeliveryState,
    EventKind,
    Silence,
    SilenceEnd,
)
from alerts.services import alerts_sweep, silence_acknowledge, silence_mute
from msp_dashboard.site24x7 import Status
from tests.alerts_support import Clock, channel, store
from tests.grid_support import make_customer
from tokens.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_cache")]
pytest_plugins = ["tests.alerts_support"]

UP, DOWN, TROUBLE = Status.UP, Status.DOWN, Status.TROUBLE


def kinds(received) -> list[tuple[str, str]]:
    """(kind, group name or "") of what the listener got, in order."""
    return [(r.json["kind"], (r.json["group"] or {}).get("name", "")) for r in received]


@pytest.fixture
def acme():
    return make_customer("Acme", fetched=None, token="active")


def test_a_new_status_alerts_once_it_held_two_refreshes_and_recovery_follows(
    acme, listener, eager, django_capture_on_commit_callbacks
):
    hook = channel("webhook", url=listener.hook())
    clock, capture = Clock(), django_capture_on_commit_callbacks
    store(clock, acme, [("ERP", UP), ("Mail", UP)], capture=capture)  # the baseline
    store(clock, acme, [("ERP", DOWN), ("Mail", UP)], capture=capture)  # 1 of 2: held
    assert listener.received == []
    assert not AlertEvent.objects.exists()

    store(clock, acme, [("ERP", DOWN), ("Mail", UP)], capture=capture)  # 2 of 2: alert
    assert sorted(kinds(listener.received)) == [("problem", ""), ("problem", "ERP")]
    customer_level = next(r.json for r in listener.received if r.json["group"] is None)
    assert customer_level["customer"]["name"] == "Acme"
    assert customer_level["from_status"] == {"code": 1, "label": "Up"}
    assert customer_level["to_status"] == {"code": 0, "label": "Down"}
    assert customer_level["hold_refreshes"] == 2

    store(clock, acme, [("ERP", DOWN), ("Mail", UP)], capture=capture)  # no news
    store(clock, acme, [("ERP", UP), ("Mail", UP)], capture=capture)  # recovery held
    assert len(listener.received) == 2
    store(clock, acme, [("ERP", UP), ("Mail", UP)], capture=capture)
    assert sorted(kinds(listener.received[2:])) == [("recovery", ""), ("recovery", "ERP")]
    assert Delivery.objects.filter(channel=hook, state=DeliveryState.SENT).count() == 4
    assert all(d.attempts == 1 for d in Delivery.objects.all())


def test_a_blip_shorter_than_the_hold_sends_nothing(
    acme, listener, eager, django_capture_on_commit_callbacks
):
    channel("webhook", url=listener.hook())
    clock, capture = Clock(), django_capture_on_commit_callbacks
    for status in (UP, DOWN, UP, UP, TROUBLE, TROUBLE):  # a one-refresh blip, then a change
        store(clock, acme, [("ERP", status)], capture=capture)
    # The blip sent nothing; Trouble held for two refreshes did.
    assert kinds(listener.received) == [("problem", ""), ("problem", "ERP")]
    assert all(r.json["to_status"]["label"] == "Trouble" for r in listener.received)
    state = AlertState.objects.get(customer=acme, group_id="")
    assert state.status == TROUBLE and state.streak == 2 and not state.flapping


def test_each_channel_may_hold_for_its_own_number_of_refreshes(
    acme, listener, eager, django_capture_on_commit_callbacks, settings
):
    settings.ALERT_HOLD_REFRESHES = 3
    quick = channel(
        "webhook",
        url=listener.hook("quick-hook-token-000001"),
        name="Quick",
        hold_refreshes=1,
        include_groups=False,
    )
    slow = channel(
        "webhook", url=listener.hook("slow-hook-token-0000002"), name="Slow", include_groups=False
    )
    clock, capture = Clock(), django_capture_on_commit_callbacks
    store(clock, acme, [("ERP", UP)], capture=capture)
    store(clock, acme, [("ERP", DOWN)], capture=capture)
    assert [r.path for r in listener.received] == ["/services/quick-hook-token-000001"]
    store(clock, acme, [("ERP", DOWN)], capture=capture)
    assert len(listener.received) == 1
    store(clock, acme, [("ERP", DOWN)], capture=capture)
    assert listener.received[-1].path == "/services/slow-hook-token-0000002"
    assert listener.received[-1].json["hold_refreshes"] == 3
    assert Delivery.objects.filter(channel=quick).count() == 1
    assert Delivery.objects.filter(channel=slow).count() == 1


def test_flapping_is_flagged_alerts_are_held_and_it_settles(
    acme, listener, eager, django_capture_on_commit_callbacks, settings
):
    settings.ALERT_HOLD_REFRESHES = 1  # every change would alert: flapping must hold them
    channel("webhook", url=listener.hook(), include_groups=False)
    clock, capture = Clock(), django_capture_on_commit_callbacks
    store(clock, acme, [("ERP", UP)], capture=capture)
    for status in (DOWN, UP, DOWN):  # three changes: three alerts
        store(clock, acme, [("ERP", status)], capture=capture)
    assert kinds(listener.received) == [("problem", ""), ("recovery", ""), ("problem", "")]

    store(clock, acme, [("ERP", UP)], capture=capture)  # the fourth change in an hour
    state = AlertState.objects.get(customer=acme, group_id="")
    assert state.flapping
    assert kinds(listener.received[3:]) == [("flapping", "")]
    assert "4 status changes in 60 min" in listener.received[3].json["text"]
    held = Delivery.objects.get(event__kind=EventKind.RECOVERY, state=DeliveryState.SUPPRESSED)
    assert held.reason == "flapping"

    store(clock, acme, [("ERP", DOWN)], capture=capture)  # still flapping: nothing sent
    assert len(listener.received) == 4
    for _ in range(12):  # an hour of Down: the changes age out of the window
        store(clock, acme, [("ERP", DOWN)], capture=capture)
    assert not AlertState.objects.get(customer=acme, group_id="").flapping
    assert kinds(listener.received[4:]) == [("settled", "")]
    assert "now Down" in listener.received[4].json["text"]


def test_an_acknowledgement_silences_the_problem_and_ends_when_it_worsens_or_recovers(
    acme, listener, eager, django_capture_on_commit_callbacks, admin_user, settings
):
    settings.ALERT_FLAP_CHANGES = 10  # four changes in 40 minutes: not flapping here
    channel("webhook", url=listener.hook(), include_groups=False)
    clock, capture = Clock(), django_capture_on_commit_callbacks
    store(clock, acme, [("ERP", UP)], capture=capture)
    store(clock, acme, [("ERP", TROUBLE)], capture=capture)
    store(clock, acme, [("ERP", TROUBLE)], capture=capture)
    assert kinds(listener.received) == [("problem", "")]
    acme.refresh_from_db()
    with clock.at(), capture(execute=True):
        ack = silence_acknowledge(customer=acme, note="ISP works on it", actor=admin_user)
    assert ack.status == TROUBLE and ack.created_by_name == "admin"
    assert AuditEvent.objects.filter(action="alert.ack", customer_id=acme.pk).exists()

    # Worse than acknowledged (Trouble -> Down): the acknowledgement ends, the alert goes out.
    store(clock, acme, [("ERP", DOWN)], capture=capture)
    store(clock, acme, [("ERP", DOWN)], capture=capture)
    ack.refresh_from_db()
    assert ack.ended_reason == SilenceEnd.WORSENED
    assert kinds(listener.received[1:]) == [("problem", "")]

    acme.refresh_from_db()
    with clock.at(), capture(execute=True):
        ack = silence_acknowledge(customer=acme, note="on site", actor=admin_user)
    store(clock, acme, [("ERP", TROUBLE)], capture=capture)  # better, still a problem: kept
    store(clock, acme, [("ERP", TROUBLE)], capture=capture)
    ack.refresh_from_db()
    assert ack.ended_at is None
    assert len(listener.received) == 2
    assert (
        Delivery.objects.filter(state=DeliveryState.SUPPRESSED, reason__startswith="ack").count()
        == 1
    )

    store(clock, acme, [("ERP", UP)], capture=capture)
    store(clock, acme, [("ERP", UP)], capture=capture)
    ack.refresh_from_db()
    assert ack.ended_reason == SilenceEnd.RECOVERED
    # The recovery goes to the channel: it heard of the problem (Down) and not of the
    # acknowledged improvement.
    assert kinds(listener.received[2:]) == [("recovery", "")]
    ends = AuditEvent.objects.filter(action="alert.ack_end", customer_id=acme.pk)
    assert {e.detail.rsplit(": ", 1)[-1] for e in ends} == {"Status worsened", "Status recovered"}


def test_an_acknowledgement_with_an_expiry_expires(acme, django_capture_on_commit_callbacks):
    clock, capture = Clock(), django_capture_on_commit_callbacks
    store(clock, acme, [("ERP", DOWN)], capture=capture)
    acme.refresh_from_db()
    with clock.at() as now, capture(execute=True):
        ack = silence_acknowledge(customer=acme, expires_at=now + timedelta(hours=1))
        assert ack.is_active(now)
    clock.tick(3599)
    with clock.at(), capture(execute=True):
        assert alerts_sweep().expired == 0
    clock.tick(2)
    with clock.at() as now, capture(execute=True):
        assert not ack.is_active(now)
        assert alerts_sweep().expired == 1
    ack.refresh_from_db()
    assert ack.ended_reason == SilenceEnd.EXPIRED
    assert AuditEvent.objects.filter(action="alert.ack_end", actor_name="system").count() == 1


def test_nothing_to_acknowledge_when_up(acme, django_capture_on_commit_callbacks):
    from alerts.services import AlertsError

    clock = Clock()
    store(clock, acme, [("ERP", UP)], capture=django_capture_on_commit_callbacks)
    acme.refresh_from_db()
    with clock.at(), pytest.raises(AlertsError, match="Nothing to acknowledge"):
        silence_acknowledge(customer=acme)


def test_a_muted_customer_sends_nothing_and_the_log_says_why(
    acme, listener, eager, django_capture_on_commit_callbacks
):
    channel("webhook", url=listener.hook())
    clock, capture = Clock(), django_capture_on_commit_callbacks
    store(clock, acme, [("ERP", UP)], capture=capture)
    with clock.at() as now, capture(execute=True):
        mute = silence_mute(customer=acme, until=now + timedelta(hours=2), note="firmware")
    for _ in range(3):
        store(clock, acme, [("ERP", DOWN)], capture=capture)
    assert listener.received == []
    reasons = set(Delivery.objects.values_list("reason", flat=True))
    assert len(reasons) == 1 and reasons.pop().startswith("muted until")
    assert AuditEvent.objects.filter(action="alert.mute", customer_id=acme.pk).exists()
    assert mute.expires_at == clock.now - timedelta(seconds=900) + timedelta(hours=2)
    # A recovery after the mute goes nowhere: no channel heard of the problem.
    clock.tick(3 * 3600)
    store(clock, acme, [("ERP", UP)], capture=capture)
    store(clock, acme, [("ERP", UP)], capture=capture)
    assert listener.received == []
    assert not Silence.objects.filter(ended_at__isnull=True, expires_at__gt=clock.now).exists()


def test_a_failed_refresh_makes_the_customer_stale_and_that_alerts_too(
    simulator, listener, eager, django_capture_on_commit_callbacks, settings
):
    from portals.services import customer_refresh
    from tests.refresh_support import fault, legacy_customers, sim_post, upstream_of

    channel("webhook", url=listener.hook(), include_groups=False)
    customer = legacy_customers(simulator, count=1)[0]
    for group in upstream_of(simulator, customer)["groups"]:  # all Up to begin with
        payload = {"customer": customer.portal_id, "group_id": group["group_id"], "status": 1}
        sim_post(simulator, "status", payload)
    capture = django_capture_on_commit_callbacks
    with capture(execute=True):
        assert customer_refresh(customer_id=customer.pk).result == "ok"
    fault(simulator, customer=customer.portal_id, kind="status", http_status=500)
    for _ in range(2):
        with capture(execute=True):
            customer_refresh(customer_id=customer.pk, manual=True)
    problem = listener.received[-1].json
    assert problem["kind"] == "problem"
    assert problem["to_status"]["code"] == Status.UNKNOWN
    assert "Stale" in problem["text"]


def test_a_failed_refresh_keeps_the_groups_baseline(
    acme, django_capture_on_commit_callbacks, settings
):
    from portals.models import Customer
    from portals.signals import refreshed_on_commit

    clock, capture = Clock(), django_capture_on_commit_callbacks
    store(clock, acme, [("ERP", UP), ("Mail", UP)], capture=capture)
    assert AlertState.objects.filter(customer=acme).count() == 3
    clock.tick()
    Customer.objects.filter(pk=acme.pk).update(
        last_attempt_at=clock.now, last_error="timed out", last_error_kind="timeout"
    )
    with clock.at(), capture(execute=True):
        refreshed_on_commit(acme.pk, ok=False)  # what portals sends after a failed refresh
    states = {s.group_id: s for s in AlertState.objects.filter(customer=acme)}
    assert states[""].status == Status.UNKNOWN and states[""].failing_since == clock.now
    assert {s.status for gid, s in states.items() if gid} == {UP}  # kept, not observed


def test_a_steady_customer_rewrites_only_its_own_data_time(
    acme, eager, django_capture_on_commit_callbacks
):
    """PERF: once a steady status is confirmed, a refresh writes the customer-level row (its
    last fetch time) and no group's state; a change writes that group's state again."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    clock, capture = Clock(), django_capture_on_commit_callbacks
    groups = [(f"G{i}", UP) for i in range(6)]
    for _ in range(3):
        store(clock, acme, groups, capture=capture)

    def state_updates(statuses) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            store(clock, acme, statuses, capture=capture)
        return [q["sql"] for q in queries if q["sql"].startswith('UPDATE "alerts_alertstate"')]

    steady = state_updates(groups)
    assert len(steady) == 1 and "CASE" not in steady[0]  # the customer-level row, plainly
    assert AlertState.objects.get(customer=acme, group_id="G0").streak == 2  # capped at the hold
    groups[0] = ("G0", DOWN)
    changed = state_updates(groups)
    assert len(changed) == 2 and not any("CASE" in sql for sql in changed)  # customer row, G0
    assert AlertState.objects.get(customer=acme, group_id="G0").status == DOWN
    for i in range(1, 6):  # scattered changes: one bulk UPDATE of the changed fields only
        groups[i] = (f"G{i}", [TROUBLE, DOWN, TROUBLE, DOWN, TROUBLE][i - 1])
    scattered = state_updates(groups)
    bulk = "VALUES" if connection.vendor == "postgresql" else "CASE"  # msp_dashboard.db
    assert len(scattered) == 1 and bulk in scattered[0] and '"group_name"' not in scattered[0]
    assert AlertState.objects.get(customer=acme, group_id="G5").status == TROUBLE


# --- settled customers: a steady refresh without reading the engine's memory --------------------


def _state_reads(clock, customer, pairs, capture, **kwargs) -> tuple[int, int]:
    """(SELECTs, UPDATEs) of alert states that one stored refresh of `pairs` runs."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        store(clock, customer, pairs, capture=capture, **kwargs)
    sql = [q["sql"] for q in queries]
    selects = [s for s in sql if s.startswith("SELECT") and 'FROM "alerts_alertstate"' in s]
    updates = [s for s in sql if s.startswith('UPDATE "alerts_alertstate"')]
    return len(selects), len(updates)


def test_a_settled_customer_is_evaluated_without_reading_its_states_until_it_changes(
    acme, listener, eager, django_capture_on_commit_callbacks
):
    """PERF: a customer whose subjects all held their status for the longest hold, heard by
    every channel, is remembered as settled (its fingerprint in the cache); a refresh that
    brings the same writes its data time with one UPDATE and reads no state. A change is
    evaluated in full, so its alert goes out as before."""
    channel("webhook", url=listener.hook())
    clock, capture = Clock(), django_capture_on_commit_callbacks
    steady = [(f"G{i}", UP) for i in range(6)]
    assert _state_reads(clock, acme, steady, capture) == (1, 0)  # the baseline: new states
    assert _state_reads(clock, acme, steady, capture)[0] == 1  # streak 2 of 2: now settled
    assert _state_reads(clock, acme, steady, capture) == (0, 1)  # settled: no state read
    assert AlertState.objects.get(customer=acme, group_id="").last_success_at == clock.now

    changed = [("G0", DOWN), *steady[1:]]
    assert _state_reads(clock, acme, changed, capture)[0] == 1  # evaluated in full
    assert listener.received == []  # 1 of 2: held
    assert _state_reads(clock, acme, changed, capture)[0] == 1
    assert sorted(kinds(listener.received)) == [("problem", ""), ("problem", "G0")]


def test_a_settled_customer_that_failed_is_evaluated_in_full_again(
    acme, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    from alerts.services import SETTLED_KEY
    from portals.models import Customer
    from portals.signals import refreshed_on_commit

    clock, capture = Clock(), django_capture_on_commit_callbacks
    steady = [("ERP", UP), ("Mail", UP)]
    for _ in range(2):
        store(clock, acme, steady, capture=capture)
    assert cache.get(SETTLED_KEY.format(acme.pk))
    clock.tick()
    Customer.objects.filter(pk=acme.pk).update(
        last_attempt_at=clock.now, last_error="timed out", last_error_kind="timeout"
    )
    with clock.at(), capture(execute=True):
        refreshed_on_commit(acme.pk, ok=False)
    assert cache.get(SETTLED_KEY.format(acme.pk)) is None  # forgotten
    assert AlertState.objects.get(customer=acme, group_id="").failing_since == clock.now

    assert _state_reads(clock, acme, steady, capture)[0] == 1  # the recovery, in full
    customer_level = AlertState.objects.get(customer=acme, group_id="")
    assert customer_level.failing_since is None and customer_level.status == UP


def test_a_settled_customer_back_after_a_gap_has_the_gap_recorded(
    acme, django_capture_on_commit_callbacks
):
    """The fingerprint cannot vouch for the time since the last data: a refresh after a gap
    longer than stale_after is evaluated in full, and the gap recorded (availability)."""
    from alerts.models import DataGap
    from portals.status import stale_after

    clock, capture = Clock(), django_capture_on_commit_callbacks
    steady = [("ERP", UP)]
    for _ in range(3):
        store(clock, acme, steady, capture=capture)
    last = clock.now
    gap = 3 * stale_after().total_seconds()
    assert _state_reads(clock, acme, steady, capture, advance=gap)[0] == 1
    recorded = DataGap.objects.get(customer=acme)
    assert (recorded.start, recorded.end) == (last + stale_after(), clock.now)


def test_with_the_cache_down_every_refresh_is_evaluated_in_full(
    acme, listener, eager, django_capture_on_commit_callbacks, cache_down
):
    """REL-10: nothing is remembered as settled, nothing fails, and alerts still go out."""
    channel("webhook", url=listener.hook())
    clock, capture = Clock(), django_capture_on_commit_callbacks
    steady = [("ERP", UP)]
    for _ in range(3):
        assert _state_reads(clock, acme, steady, capture)[0] == 1
    for _ in range(2):
        store(clock, acme, [("ERP", DOWN)], capture=capture)
    assert sorted(kinds(listener.received)) == [("problem", ""), ("problem", "ERP")]


def test_a_process_reads_the_channels_anew_only_when_they_change(
    django_assert_num_queries, django_capture_on_commit_callbacks
):
    """The enabled channels are kept by the process under the channels' version: a batch
    after the first reads no channel row, and a change (committed) is seen at once."""
    from django.core.cache import cache

    from alerts.models import AlertChannel
    from alerts.services import CHANNELS_VERSION, channel_save, channels_enabled, version

    first = channel("webhook", url="https://hooks.example.test/a", name="A")
    assert [c.name for c in channels_enabled()] == ["A"]
    cache.delete(f"alerts:channels:{version(CHANNELS_VERSION)}")  # kept in the process
    with django_assert_num_queries(0):
        assert [c.name for c in channels_enabled()] == ["A"]
    with django_capture_on_commit_callbacks(execute=True):
        channel_save(channel=AlertChannel(name="B", kind="email", recipients="noc@example.test"))
    assert sorted(c.name for c in channels_enabled()) == ["A", "B"]
    first.enabled = False
    with django_capture_on_commit_callbacks(execute=True):
        channel_save(channel=first)
    assert [c.name for c in channels_enabled()] == ["B"]


def test_with_the_cache_down_the_channels_are_read_every_time(cache_down):
    from alerts.models import AlertChannel
    from alerts.services import channels_enabled

    channel("webhook", url="https://hooks.example.test/a", name="A")
    assert [c.name for c in channels_enabled()] == ["A"]
    AlertChannel.objects.update(enabled=False)  # no version to bump: nothing kept either
    assert channels_enabled() == []


def test_a_deleted_customer_group_or_an_old_memo_reads_the_channels_anew(
    django_assert_num_queries, django_capture_on_commit_callbacks, monkeypatch
):
    """Deleting a group a channel routes to (a cascade no channel_save sees) gives the channels
    a new version; and a process re-reads them after CHANNELS_KEPT_S whatever the version."""
    from alerts import services
    from portals.models import CustomerGroup

    gold = CustomerGroup.objects.create(name="Gold")
    channel("webhook", url="https://hooks.example.test/a", name="A", groups=[gold])
    assert [c.groups for c in services.channels_enabled()] == [frozenset({gold.pk})]
    with django_capture_on_commit_callbacks(execute=True):
        gold.delete()
    assert [c.groups for c in services.channels_enabled()] == [frozenset()]  # every customer

    with django_assert_num_queries(0):
        services.channels_enabled()
    later = services.time.monotonic() + services.CHANNELS_KEPT_S + 1
    monkeypatch.setattr(services.time, "monotonic", lambda: later)
    from django.core.cache import cache

    cache.delete(f"alerts:channels:{services.version(services.CHANNELS_VERSION)}")
    with django_assert_num_queries(2):  # the channels and their groups
        assert [c.name for c in services.channels_enabled()] == ["A"]
