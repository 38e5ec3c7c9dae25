"""Alert services: the engine that turns refreshes into alerts, acknowledgements and mutes,
channels and their deliveries, Site24x7-side incidents, what users last saw, and the sweep.

The engine (`customer_observe`) runs after every refresh of a customer (the
`portals.signals.customers_refreshed` receiver), in the refresh's worker, after its
transaction committed; the refresh's lease makes evaluations of one customer sequential.

- Subjects: the customer's status as the grid shows it (Stale counts as Unknown) and each of
  its top monitor groups (subgroups roll up into them) while its data is fresh.
- Flap suppression: a new status alerts once it held for `hold` refreshes in a row;
  `AlertState.confirmed` keeps, per hold value in use (ALERT_HOLD_REFRESHES and each
  channel's override), what channels with that hold last heard. The first observation is
  the baseline (no alert). A subject with ALERT_FLAP_CHANGES observed changes within
  ALERT_FLAP_WINDOW is flapping: flagged on the grid, its alerts held, one "flapping"
  notice, one "settled" notice when it calms down.
- What alerts: a problem (Down, Critical, Trouble, Configuration Error, Stale) that is new
  or worse; a recovery (a problem to a non-problem status), sent only to channels that were
  told about the problem; an improvement that is still a problem. Up <-> Maintenance and
  the like do not alert.
- Suppressed, and logged as such: a muted customer; an acknowledged subject (a customer
  acknowledgement covers its groups); a flapping subject; Stale transitions of a customer
  whose data centre has an open Site24x7 incident (one incident notice instead).
- An acknowledgement ends by itself when its subject recovers (to a non-problem status) or
  worsens (a more severe status than the one acknowledged), judged at the moment the change
  would alert with the global hold; an improvement that is still a problem keeps it.

Deliveries go through Celery (`alerts.tasks.deliver(delivery_id)`), retried with full-jitter
back-off on transient failures, each attempt logged (DeliveryAttempt)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from msp_dashboard.db import rows_for_ids, rows_insert, rows_write
from msp_dashboard.site24x7 import Status
from portals.models import Customer, CustomerGroup, MonitorGroup
from portals.queries import clock, is_problem
from portals.signals import Refreshed
from portals.status import customer_display_status, customer_freshness, stale_after
from tokens.crypto import DecryptionError
from tokens.models import AuditAction
from tokens.services import audit_record, secret_open, secret_rotate, secret_seal

from . import messages
from .models import (
    AlertChannel,
    AlertEvent,
    AlertState,
    ChannelKind,
    DataGap,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    EventKind,
    Silence,
    SilenceEnd,
    SilenceKind,
    UpstreamIncident,
    UserSeen,
)

logger = logging.getLogger("alerts")

UPSTREAM_KINDS = ("timeout", "server", "connection", "response", "throttled")
"""Refresh error kinds (portals.services) that point at Site24x7 rather than the customer."""
TRANSITION_KINDS = (EventKind.PROBLEM, EventKind.RECOVERY, EventKind.CHANGE)


class AlertsError(Exception):
    """A request the alert services refuse; the message is safe to show."""


def _status(code: int | None) -> Status:
    try:
        return Status(code)
    except (TypeError, ValueError):
        return Status.UNKNOWN


# --- a cache that may be down (REL-10: pages render from the database) ---------------------------


def cache_get(key: str):
    try:
        return cache.get(key)
    except Exception:
        return None


def cache_get_many(keys: list[str]) -> dict:
    if not keys:
        return {}
    try:
        return cache.get_many(keys)
    except Exception:
        return {}


def cache_set(key: str, value, timeout: int) -> None:
    with contextlib.suppress(Exception):
        cache.set(key, value, timeout)


def _bump(key: str) -> None:
    """A new version for `key`: readers rebuild what they cached under the old one."""
    cache_set(key, uuid.uuid4().hex, None)


def version(key: str) -> str:
    current = cache_get(key)
    if current is None:
        current = uuid.uuid4().hex
        with contextlib.suppress(Exception):
            if not cache.add(key, current, None):
                current = cache.get(key) or current
    return current


OVERLAY_VERSION = "alerts:overlay-version"
CHANNELS_VERSION = "alerts:channels-version"


def overlay_changed() -> None:
    """Acknowledgements, mutes, flapping or incidents changed: the grid reads them anew."""
    transaction.on_commit(lambda: _bump(OVERLAY_VERSION))


# --- channels ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelInfo:
    pk: int
    name: str
    kind: str
    hold: int
    include_groups: bool
    notify_recovery: bool
    groups: frozenset[int]

    def routes(self, customer_groups: frozenset[int]) -> bool:
        return not self.groups or bool(self.groups & customer_groups)


def channels_changed() -> None:
    """The channels' routing changed (a channel, its groups, a customer group: the model
    signals alerts.apps connects, whatever path saved them): on commit, every process reads
    them anew."""
    transaction.on_commit(lambda: _bump(CHANNELS_VERSION))


# (channels version, when read, channels) this process read last: a batch then reads one cache
# key, not two and an unpickled list. A new version (any channel change, or the cache lost)
# reads anew, and so does the first batch after CHANNELS_KEPT_S, as the cache entry expires.
CHANNELS_KEPT_S = 3600
_channels_kept: tuple[str, float, list[ChannelInfo]] = ("", 0.0, [])


def channels_enabled() -> list[ChannelInfo]:
    """The enabled channels (cached until a channel changes)."""
    global _channels_kept
    current = version(CHANNELS_VERSION)
    kept_version, kept_at, kept = _channels_kept
    if kept_version == current and time.monotonic() - kept_at < CHANNELS_KEPT_S:
        return kept
    key = f"alerts:channels:{current}"
    found = cache_get(key)
    if found is None:
        found = [
            ChannelInfo(
                c.pk,
                c.name,
                c.kind,
                c.hold(),
                c.include_groups,
                c.notify_recovery,
                frozenset(g.pk for g in c.customer_groups.all()),
            )
            for c in AlertChannel.objects.filter(enabled=True).prefetch_related("customer_groups")
        ]
        cache_set(key, found, CHANNELS_KEPT_S)
    _channels_kept = (current, time.monotonic(), found)
    return found


def holds_in_use(channels: list[ChannelInfo]) -> list[int]:
    return sorted({settings.ALERT_HOLD_REFRESHES, *(c.hold for c in channels)})


@sensitive_variables("url", "signing_secret")
def channel_save(
    *,
    channel: AlertChannel,
    groups=None,
    url: str | None = None,
    signing_secret: str | None = None,
    actor=None,
    ip: str | None = None,
) -> AlertChannel:
    """Create or update a channel. `url` / `signing_secret`: None keeps the stored one, ""
    removes it, anything else replaces it (encrypted; only its last four characters kept)."""
    creating = channel.pk is None
    if url is not None:
        sealed = secret_seal(secret=url) if url else None
        channel.url_ciphertext = sealed.ciphertext if sealed else ""
        channel.url_last4 = sealed.last4 if sealed else ""
        channel.url_fingerprint = sealed.fingerprint if sealed else ""
    if signing_secret is not None:
        sealed = secret_seal(secret=signing_secret) if signing_secret else None
        channel.signing_ciphertext = sealed.ciphertext if sealed else ""
        channel.signing_fingerprint = sealed.fingerprint if sealed else ""
    if channel.uses_url and not channel.url_ciphertext:
        raise AlertsError("This kind of channel needs a webhook URL.")
    if channel.kind == ChannelKind.EMAIL and not channel.recipient_list():
        raise AlertsError("An email channel needs at least one recipient.")
    channel.updated_at = timezone.now()
    if creating and getattr(actor, "is_authenticated", False):
        channel.created_by = actor
    with transaction.atomic():
        channel.save()
        if groups is not None:
            channel.customer_groups.set(groups)
        changed = "URL replaced" if url else "URL removed" if url == "" else ""
        detail = f"{'created' if creating else 'updated'} {channel.kind} channel {channel.name!r}"
        audit_record(
            action=AuditAction.ALERT_CHANNEL,
            actor=actor,
            ip=ip,
            detail=f"{detail}{'; ' + changed if changed and not creating else ''}",
        )  # the channels' version moves with the save (alerts.apps: on_channels_changed)
    return channel


def channel_delete(*, channel: AlertChannel, actor=None, ip: str | None = None) -> None:
    with transaction.atomic():
        name, kind = channel.name, channel.kind
        channel.delete()
        audit_record(
            action=AuditAction.ALERT_CHANNEL,
            actor=actor,
            ip=ip,
            detail=f"deleted {kind} channel {name!r}",
        )


def channel_send_test(*, channel: AlertChannel, actor=None, ip: str | None = None) -> Delivery:
    """Queue a test message to this channel (disabled ones too: that is how one checks it)."""
    who = actor.get_username() if getattr(actor, "is_authenticated", False) else "system"
    with transaction.atomic():
        event = AlertEvent.objects.create(
            kind=EventKind.TEST, detail=f"Test message requested by {who}: this channel works."
        )
        delivery = Delivery.objects.create(event=event, channel=channel, next_attempt_at=event.at)
        audit_record(
            action=AuditAction.ALERT_TEST,
            actor=actor,
            ip=ip,
            detail=f"test message queued to {channel.kind} channel {channel.name!r}",
        )
        _enqueue([delivery.pk])
    return delivery


def channels_rotate_keys() -> tuple[int, int]:
    """Re-encrypt every channel's sealed URL and signing secret with the primary key of
    FIELD_ENCRYPTION_KEYS (after `rotate_token_key`, before the old key is removed).
    Idempotent; returns (rotated, failed)."""
    rotated = failed = 0
    for channel in AlertChannel.objects.order_by("pk"):
        changed = []
        for field in ("url_ciphertext", "signing_ciphertext"):
            try:
                new = secret_rotate(ciphertext=getattr(channel, field))
            except DecryptionError:
                failed += 1
                continue
            if new:
                setattr(channel, field, new)
                changed.append(field)
        if changed:
            channel.save(update_fields=changed)  # moves the channels' version (post_save)
            rotated += 1
    return rotated, failed


# --- the engine ----------------------------------------------------------------------------------


@dataclass
class Transition:
    state: AlertState
    hold: int
    old: int
    new: int


@dataclass
class Observed:
    group_id: str
    group_name: str
    status: int


def customer_observe(
    *, customer_id: int, ok: bool, now: datetime | None = None, customer=None, groups=None
) -> list:
    """Evaluate one refresh of a customer: update the engine's state, create the events and
    deliveries it calls for, and check its data centre for Site24x7-side trouble. Returns the
    events created. `customer` (the row as the refresh wrote it) and `groups` (the groups it
    stored, GroupStatus) spare reading them again; without them both are read."""
    return customers_observe([Refreshed(customer_id, ok, customer, groups)], now=now)


def customers_observe(items: list[Refreshed], *, now: datetime | None = None) -> list:
    """`customer_observe` for the refreshes of a batch, in one transaction: the customers'
    states read and written with a few statements, one incident check per data centre.

    A settled customer (`_settled`) whose refresh brought what it last brought has only its
    data time written, by one UPDATE for the batch, without reading its states."""
    now = now or timezone.now()
    seen = [found for item in items if (found := _observed(item))]
    if not seen:
        return []
    channels = channels_enabled()
    holds = holds_in_use(channels)
    observed = {customer.pk: _observations(customer, item.groups, now) for customer, item in seen}
    prints = {pk: _fingerprint(found, holds) for pk, found in observed.items()}
    events: list[AlertEvent] = []
    with transaction.atomic():
        quiet = _settled_write(seen, prints, now)
        rest = [(customer, item) for customer, item in seen if customer.pk not in quiet]
        states = _states_locked([customer.pk for customer, _ in rest])
        writes, results, flags, settled = _StateWrites(), [], False, {}
        for customer, item in rest:
            known = dict(states[customer.pk])
            transitions, flaps, changed = _observe_all(
                customer, states[customer.pk], observed[customer.pk], item.ok, holds, now, writes
            )
            flags = flags or changed
            results.append((customer, transitions, flaps))
            if _is_settled(known, observed[customer.pk], item.ok, holds):
                settled[customer.pk] = prints[customer.pk]
        writes.write()
        incidents = _upstream_checks(seen, now)
        events += incidents
        for customer, transitions, flaps in results:
            if transitions or flaps:
                events += _events(customer, transitions, flaps, channels, now)
        if flags or incidents:
            overlay_changed()
        unsettled = [customer.pk for customer, _ in rest if customer.pk not in settled]
        transaction.on_commit(lambda: _settled_remember(settled, unsettled))
    return events


# --- settled customers: a steady refresh without reading the engine's memory ---------------------

SETTLED_KEY = "alerts:settled:{}"
SETTLED_TTL = 24 * 3600  # seconds; a customer not refreshed for a day is evaluated in full


def _fingerprint(observed: list[Observed], holds: list[int]) -> str:
    """What a refresh showed the engine (every subject's status and name) and the holds in use."""
    seen = sorted((o.group_id, o.group_name[:200], o.status) for o in observed)
    return hashlib.blake2b(repr((holds, seen)).encode(), digest_size=16).hexdigest()


def _is_settled(states: dict[str, AlertState], observed: list[Observed], ok, holds) -> bool:
    """True when evaluating the same observations again could change nothing but the
    customer's data time: every subject known, at its status for the longest hold, heard by
    every hold, no recent change, not flapping, and the customer's data not failing."""
    if not ok or set(states) != {o.group_id for o in observed}:
        return False
    longest = max(holds, default=1)
    for item in observed:
        state = states[item.group_id]
        if not (
            state.status == item.status
            and state.streak >= longest
            and not state.changes
            and not state.flapping
            and all(state.confirmed.get(str(h)) == item.status for h in holds)
            and (state.group_name == item.group_name[:200] or not item.group_name)
        ):
            return False
    customer_level = states[""]
    return customer_level.failing_since is None and customer_level.last_success_at is not None


def _settled_write(seen, prints: dict[int, str], now: datetime) -> set[int]:
    """Write the data time of the successful refreshes of settled customers whose
    fingerprint is the one remembered, in one UPDATE per data time; their ids. The UPDATE
    checks what the cache cannot vouch for (the data not failing, no gap longer than
    stale_after since the last one): if any row fails it, none is taken this way."""
    candidates = {customer.pk: customer for customer, item in seen if item.ok}
    remembered = cache_get_many([SETTLED_KEY.format(pk) for pk in candidates])  # down: {}
    by_time: dict[datetime, list[int]] = {}
    for pk, customer in candidates.items():
        fetched = customer.data_fetched_at or customer.last_success_at
        if fetched and remembered.get(SETTLED_KEY.format(pk)) == prints[pk]:
            by_time.setdefault(fetched, []).append(pk)
    quiet: set[int] = set()
    for fetched, pks in by_time.items():
        written = AlertState.objects.filter(
            customer_id__in=pks, group_id="", failing_since__isnull=True, flapping=False,
            last_success_at__gte=fetched - stale_after(), last_success_at__lte=fetched,
        ).update(last_success_at=fetched, observed_at=now)  # fmt: skip
        if written == len(pks):
            quiet.update(pks)
        # else: the others are evaluated in full, which writes these rows again, harmlessly
    return quiet


def _settled_remember(settled: dict[int, str], unsettled: list[int]) -> None:
    """After the evaluation committed: remember the settled customers' fingerprints, forget
    the others' (a failure or a change must be evaluated in full next time)."""
    with contextlib.suppress(Exception):
        if settled:
            prints = {SETTLED_KEY.format(pk): fp for pk, fp in settled.items()}
            cache.set_many(prints, SETTLED_TTL)
        if unsettled:
            cache.delete_many([SETTLED_KEY.format(pk) for pk in unsettled])


def _observed(item: Refreshed) -> tuple[Customer, Refreshed] | None:
    """(the customer, the item), the row read anew when the item does not carry it; None
    for a customer gone or inactive."""
    customer = item.customer
    if customer is None or customer.pk != item.customer_id:
        customer = Customer.objects.filter(pk=item.customer_id).first()
        item = dataclasses.replace(item, customer=customer, groups=None)  # groups read anew
    return (customer, item) if customer is not None and customer.is_active else None


def _states_for_update(ids: list[int]):
    return AlertState.objects.select_for_update().filter(customer_id__in=ids).order_by("pk")


def _states_locked(customer_ids: list[int]) -> dict[int, dict[str, AlertState]]:
    states: dict[int, dict[str, AlertState]] = {pk: {} for pk in customer_ids}
    if not customer_ids:  # every customer of the batch settled
        return states
    for state in rows_for_ids(_states_for_update, customer_ids):
        states[state.customer_id][state.group_id] = state
    return states


def _upstream_checks(seen, now: datetime) -> list[AlertEvent]:
    """One incident check per data centre of the batch (failed: any of its refreshes)."""
    failed: dict[str, bool] = {}
    for customer, item in seen:
        failed[customer.data_centre] = failed.get(customer.data_centre, False) or not item.ok
    events: list[AlertEvent] = []
    for data_centre, any_failed in failed.items():
        events += _upstream_check(data_centre, now, failed=any_failed)
    return events


class _StateWrites:
    """The state writes of one evaluation (one customer or a batch): new states, changed ones
    (only their changed fields) and vanished ones, written together."""

    def __init__(self):
        self.new: list[AlertState] = []
        self.changed: list[tuple[AlertState, dict]] = []
        self.vanished: list[int] = []

    def write(self) -> None:
        if self.vanished:
            AlertState.objects.filter(pk__in=self.vanished).delete()
        rows_insert(self.new, ignore_conflicts=True)  # a racing first look
        rows_write(self.changed)


def _observations(customer: Customer, groups, now: datetime) -> list[Observed]:
    status = customer_display_status(customer, now)
    observed = [Observed("", "", int(status))]
    if customer_freshness(customer, now).stale:
        return observed  # the groups' last known statuses say nothing new
    if groups is None:
        groups = MonitorGroup.objects.filter(customer=customer, top_group=True)
    observed += [
        Observed(g.group_id[:40], g.name[:200], int(g.status)) for g in groups if g.top_group
    ]
    return observed


def _observe_all(customer, states, observations, ok, holds, now, writes: _StateWrites):
    transitions: list[Transition] = []
    flaps: list[tuple[AlertState, bool]] = []
    new, changed, flags = writes.new, writes.changed, False
    for item in observations:
        state = states.pop(item.group_id, None)
        if state is None:
            state = AlertState(
                customer=customer,
                group_id=item.group_id,
                group_name=item.group_name[:200],
                status=item.status,
                streak=1,
                confirmed={str(h): item.status for h in holds},
                changes=[],
                observed_at=now,
            )
            new.append(state)
        else:
            before = _memory(state)
            state.group_name = item.group_name[:200] or state.group_name
            was_flapping = state.flapping
            transitions += _observe(state, item.status, holds, now)
            if state.flapping != was_flapping:
                flaps.append((state, state.flapping))
                flags = True
        if not item.group_id:
            _track_data(state, customer, ok, now)
        if state.pk:
            diff = _memory_diff(before, state)
            if diff:
                diff["observed_at"] = state.observed_at = now
                changed.append((state, diff))
    groups_seen = len(observations) > 1 or not customer_freshness(customer, now).stale
    # Groups gone upstream lose their state; a stale customer's groups were not looked at.
    if groups_seen:
        writes.vanished += [s.pk for gid, s in states.items() if gid and s.pk]
    return transitions, flaps, flags


STATE_FIELDS = ["group_name", "status", "streak", "confirmed", "changes", "flapping",
                "failing_since", "last_success_at"]  # fmt: skip


def _memory(state: AlertState) -> dict:
    """What the engine remembers of a subject (copies): only what changed is written, so a
    steady customer's refresh writes one row (its data time), or none."""
    return {name: copy.copy(getattr(state, name)) for name in STATE_FIELDS}


def _memory_diff(before: dict, state: AlertState) -> dict:
    return {
        name: getattr(state, name)
        for name, value in before.items()
        if getattr(state, name) != value
    }


def _recent(changes: list[str], now: datetime) -> list[str]:
    horizon = now - timedelta(seconds=settings.ALERT_FLAP_WINDOW)
    return [c for c in changes if datetime.fromisoformat(c) > horizon][-50:]


def _observe(state: AlertState, status: int, holds: list[int], now: datetime) -> list[Transition]:
    """One refresh's observation of one subject: the transitions it confirms, per hold."""
    if status != state.status:
        state.changes = _recent([*state.changes, now.isoformat()], now)
        state.status, state.streak = status, 1
    else:  # counted up to the longest hold: beyond it, nothing it decides changes
        state.streak = min(state.streak + 1, max(holds, default=1))
        state.changes = _recent(state.changes, now)
    state.flapping = len(state.changes) >= settings.ALERT_FLAP_CHANGES
    out = []
    for hold in holds:
        key = str(hold)
        heard = state.confirmed.get(key)
        if heard is None:
            state.confirmed[key] = status  # a hold value new in use starts from what is now
        elif heard != status and state.streak >= hold:
            state.confirmed[key] = status
            out.append(Transition(state, hold, heard, status))
    return out


def _track_data(state: AlertState, customer: Customer, ok: bool, now: datetime) -> None:
    """Customer level: when its failures began (for the incident banner), and stretches
    without fresh data (availability leaves them out)."""
    fetched = customer.data_fetched_at or customer.last_success_at
    if ok:
        previous = state.last_success_at
        if previous and fetched and fetched - previous > stale_after():
            DataGap.objects.create(customer=customer, start=previous + stale_after(), end=fetched)
        state.last_success_at = fetched
        state.failing_since = None
    elif state.failing_since is None:
        state.failing_since = customer.last_attempt_at or now
        if state.last_success_at is None:
            state.last_success_at = fetched


def _kind(old: int, new: int) -> str | None:
    old_s, new_s = _status(old), _status(new)
    old_p, new_p = is_problem(old_s), is_problem(new_s)
    if new_p and (not old_p or new_s.severity < old_s.severity):
        return EventKind.PROBLEM
    if old_p and not new_p:
        return EventKind.RECOVERY
    if old_p and new_p:
        return EventKind.CHANGE
    return None


def _event(customer: Customer, kind: str, state: AlertState | None, now, **fields) -> AlertEvent:
    return AlertEvent.objects.create(
        kind=kind,
        customer=customer,
        customer_name=customer.name,
        group_id=state.group_id if state else "",
        group_name=state.group_name if state else "",
        data_centre=customer.data_centre,
        at=now,
        **fields,
    )


def _stale_detail(customer: Customer, now: datetime) -> str:
    freshness = customer_freshness(customer, now)
    return freshness.reason[:200] if freshness.stale else ""


def _events(customer, transitions, flaps, channels, now) -> list[AlertEvent]:
    silences = list(Silence.objects.filter(customer=customer, ended_at__isnull=True))
    _end_acks(silences, transitions, now)
    context = _Suppression(customer, silences, now)
    groups = frozenset(
        CustomerGroup.customers.through.objects.filter(customer_id=customer.pk).values_list(
            "customergroup_id", flat=True
        )
    )
    routed = [c for c in channels if c.routes(groups)]
    events, pending = [], []
    for t in transitions:
        kind = _kind(t.old, t.new)
        if kind is None:
            continue
        detail = _stale_detail(customer, now) if t.new == Status.UNKNOWN else ""
        event = _event(
            customer,
            kind,
            t.state,
            now,
            from_status=t.old,
            to_status=t.new,
            hold=t.hold,
            detail=detail,
        )
        events.append(event)
        for channel in routed:
            if channel.hold == t.hold:
                pending += _deliveries(event, channel, context, t.state)
    for state, started in flaps:
        count, level = len(state.changes), not state.group_id
        minutes = settings.ALERT_FLAP_WINDOW // 60
        detail = (
            f"{count} status changes in {minutes} min; its alerts are held until it settles"
            if started
            else f"settled; now {messages.status_word(state.status, customer_level=level)}"
        )
        kind = EventKind.FLAPPING if started else EventKind.SETTLED
        event = _event(customer, kind, state, now, to_status=state.status, detail=detail)
        events.append(event)
        for channel in routed:
            pending += _deliveries(event, channel, context, state)
    _enqueue(pending)
    return events


class _Suppression:
    """Why a delivery for this customer is held, if it is."""

    def __init__(self, customer, silences, now):
        self.customer = customer
        self.now = now
        self.silences = [s for s in silences if s.is_active(now)]
        self.incident = UpstreamIncident.objects.filter(
            data_centre=customer.data_centre, ended_at__isnull=True
        ).first()

    def reason(self, event: AlertEvent, state: AlertState | None) -> str:
        mute = next((s for s in self.silences if s.kind == SilenceKind.MUTE), None)
        if mute:
            return f"muted until {clock(mute.expires_at)}" if mute.expires_at else "muted"
        for ack in self.silences:
            if ack.kind == SilenceKind.ACK and ack.group_id in ("", event.group_id):
                return f"acknowledged by {ack.created_by_name or 'someone'}"
        if event.kind in TRANSITION_KINDS and state is not None and state.flapping:
            return "flapping"
        unknown = Status.UNKNOWN in (event.from_status, event.to_status)
        if self.incident and not event.group_id and unknown:
            return f"Site24x7 API failing in {self.incident.data_centre}"
        return ""


def _told_about_problem(channel: ChannelInfo, event: AlertEvent) -> bool:
    """A recovery (or an improvement) goes only to a channel that was told of the problem:
    the last alert it was sent (or is being sent) about this subject is not a recovery."""
    last = (
        Delivery.objects.filter(
            channel_id=channel.pk,
            event__customer_id=event.customer_id,
            event__group_id=event.group_id,
            event__kind__in=TRANSITION_KINDS,
        )
        .exclude(event=event)
        .exclude(state=DeliveryState.SUPPRESSED)
        .order_by("-created_at", "-id")
        .values_list("event__kind", flat=True)
        .first()
    )
    return last is not None and last != EventKind.RECOVERY


def _deliveries(event, channel: ChannelInfo, context: _Suppression, state) -> list[int]:
    if event.group_id and not channel.include_groups:
        return []
    if event.kind in (EventKind.RECOVERY, EventKind.SETTLED) and not channel.notify_recovery:
        return []
    if event.kind in (EventKind.RECOVERY, EventKind.CHANGE) and not _told_about_problem(
        channel, event
    ):
        return []
    reason = context.reason(event, state)
    delivery = Delivery.objects.create(
        event=event,
        channel_id=channel.pk,
        state=DeliveryState.SUPPRESSED if reason else DeliveryState.PENDING,
        reason=reason[:100],
        next_attempt_at=None if reason else event.at,
    )
    return [] if reason else [delivery.pk]


def _end_acks(silences: list[Silence], transitions: list[Transition], now: datetime) -> None:
    """An acknowledgement ends when its subject recovers or gets worse than acknowledged."""
    hold = settings.ALERT_HOLD_REFRESHES
    for t in transitions:
        if t.hold != hold:
            continue
        for ack in silences:
            if ack.kind != SilenceKind.ACK or ack.group_id != t.state.group_id or ack.ended_at:
                continue
            new = _status(t.new)
            if not is_problem(new):
                _end(ack, SilenceEnd.RECOVERED, now)
            elif ack.status is not None and new.severity < _status(ack.status).severity:
                _end(ack, SilenceEnd.WORSENED, now)


def _enqueue(delivery_ids: list[int]) -> None:
    if not delivery_ids:
        return
    from .tasks import deliver

    def publish():
        for pk in delivery_ids:
            deliver.apply_async(args=[pk], expires=3600)

    transaction.on_commit(publish)


# --- Site24x7-side trouble -----------------------------------------------------------------------


def _upstream_check(data_centre: str, now: datetime, *, failed: bool) -> list[AlertEvent]:
    """Open or close this data centre's incident; returns the notice created, if any.

    Considered: the active customers of the data centre refreshed within
    ALERT_UPSTREAM_WINDOW (or paused by their breaker); failing: those whose last attempt
    failed with a transient/upstream error. An incident opens when at least
    ALERT_UPSTREAM_MIN_CUSTOMERS and ALERT_UPSTREAM_RATIO of them fail, and closes when
    that no longer holds."""
    open_incident = UpstreamIncident.objects.filter(
        data_centre=data_centre, ended_at__isnull=True
    ).first()
    if not failed and open_incident is None:
        return []
    window = now - timedelta(seconds=settings.ALERT_UPSTREAM_WINDOW)
    considered = Customer.objects.filter(is_active=True, data_centre=data_centre).filter(
        Q(last_attempt_at__gte=window) | Q(paused_until__gt=now)
    )
    failing_q = Q(last_error_kind__in=UPSTREAM_KINDS)
    counts = considered.aggregate(total=Count("pk"), failing=Count("pk", filter=failing_q))
    total, failing = counts["total"], counts["failing"]
    trouble = (
        failing >= settings.ALERT_UPSTREAM_MIN_CUSTOMERS
        and failing >= settings.ALERT_UPSTREAM_RATIO * total
    )
    if trouble and open_incident is None:
        return _incident_open(data_centre, considered.filter(failing_q), failing, total, now)
    if trouble:
        UpstreamIncident.objects.filter(pk=open_incident.pk).update(
            failing=failing, considered=total
        )
        return []
    if open_incident is not None:
        return _incident_close(open_incident, failing, total, now)
    return []


def _incident_open(data_centre, failing_customers, failing, total, now) -> list[AlertEvent]:
    since = AlertState.objects.filter(
        group_id="", customer__in=failing_customers.values("pk")
    ).aggregate(first=Min("failing_since"))["first"]
    kinds = list(failing_customers.values_list("last_error_kind", flat=True)[:50])
    kind = max(set(kinds), key=kinds.count) if kinds else ""
    try:
        with transaction.atomic():
            incident = UpstreamIncident.objects.create(
                data_centre=data_centre,
                since=min(since or now, now),
                opened_at=now,
                failing=failing,
                considered=total,
                error_kind=kind,
            )
    except IntegrityError:
        return []  # another worker opened it a moment ago
    logger.warning(
        "alerts: Site24x7 API in %s failing (%d of %d customers)", data_centre, failing, total
    )
    detail = (
        f"{failing} of {total} customers in data centre {data_centre} cannot be refreshed "
        f"({kind or 'errors'}) since {clock(incident.since)}; their alerts are grouped into "
        f"this notice."
    )
    return [_upstream_event(EventKind.UPSTREAM_DOWN, data_centre, detail, now)]


def _incident_close(incident, failing, total, now) -> list[AlertEvent]:
    UpstreamIncident.objects.filter(pk=incident.pk).update(
        ended_at=now, failing=failing, considered=total
    )
    minutes = int((now - incident.since).total_seconds() // 60)
    detail = (
        f"Customers in data centre {incident.data_centre} refresh again "
        f"(failing since {clock(incident.since)}, {minutes} min)."
    )
    return [_upstream_event(EventKind.UPSTREAM_UP, incident.data_centre, detail, now)]


def _upstream_event(kind, data_centre, detail, now) -> AlertEvent:
    event = AlertEvent.objects.create(kind=kind, data_centre=data_centre, detail=detail, at=now)
    in_dc = set(
        CustomerGroup.customers.through.objects.filter(
            customer__data_centre=data_centre, customer__is_active=True
        ).values_list("customergroup_id", flat=True)
    )
    pending = []
    for channel in channels_enabled():
        if kind == EventKind.UPSTREAM_UP and not channel.notify_recovery:
            continue
        if channel.routes(frozenset(in_dc)):
            delivery = Delivery.objects.create(
                event=event, channel_id=channel.pk, next_attempt_at=now
            )
            pending.append(delivery.pk)
    _enqueue(pending)
    return event


# --- acknowledgements and mutes ------------------------------------------------------------------


def _who(actor) -> str:
    return actor.get_username() if getattr(actor, "is_authenticated", False) else "system"


def _end(silence: Silence, reason: str, now: datetime, actor=None, ip=None) -> None:
    updated = Silence.objects.filter(pk=silence.pk, ended_at__isnull=True).update(
        ended_at=now, ended_reason=reason, ended_by_name=_who(actor)
    )
    silence.ended_at, silence.ended_reason = now, reason
    if not updated:
        return
    action = (
        AuditAction.ALERT_ACK_END if silence.kind == SilenceKind.ACK else AuditAction.ALERT_MUTE_END
    )
    what = f"group {silence.group_name!r}" if silence.group_id else "customer"
    audit_record(
        action=action,
        actor=actor,
        ip=ip,
        customer=silence.customer,
        detail=f"{silence.get_kind_display().lower()} of {what} ended: {SilenceEnd(reason).label}",
    )
    overlay_changed()


def _current_status(customer: Customer, group_id: str, now: datetime) -> tuple[Status, str]:
    if not group_id:
        return customer_display_status(customer, now), ""
    group = MonitorGroup.objects.filter(customer=customer, group_id=group_id).first()
    if group is None:
        raise AlertsError("That monitor group is gone; refresh the page.")
    return _status(group.status), group.name


def silence_acknowledge(
    *,
    customer: Customer,
    group_id: str = "",
    note: str = "",
    expires_at: datetime | None = None,
    actor=None,
    ip: str | None = None,
    now: datetime | None = None,
) -> Silence:
    """Acknowledge the current problem of a customer (or one of its groups): it sorts below
    unacknowledged problems and alerts no more until it recovers, worsens or expires."""
    now = now or timezone.now()
    status, group_name = _current_status(customer, group_id, now)
    if not is_problem(status):
        raise AlertsError(f"Nothing to acknowledge: it is {status.label} now.")
    if expires_at is not None and expires_at <= now:
        raise AlertsError("The expiry must be in the future.")
    with transaction.atomic():
        for old in Silence.objects.filter(
            customer=customer, group_id=group_id, kind=SilenceKind.ACK, ended_at__isnull=True
        ):
            _end(old, SilenceEnd.REPLACED, now, actor, ip)
        ack = Silence.objects.create(
            kind=SilenceKind.ACK,
            customer=customer,
            group_id=group_id,
            group_name=group_name,
            status=int(status),
            note=note[:300],
            created_at=now,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            created_by_name=_who(actor),
            expires_at=expires_at,
        )
        until = f"; expires {clock(expires_at)}" if expires_at else ""
        what = f"group {group_name!r}" if group_id else "customer"
        audit_record(
            action=AuditAction.ALERT_ACK,
            actor=actor,
            ip=ip,
            customer=customer,
            detail=f"acknowledged {what} ({status.label}){until}: {note}"[:300],
        )
        overlay_changed()
    return ack


def silence_mute(
    *,
    customer: Customer,
    until: datetime,
    note: str = "",
    actor=None,
    ip: str | None = None,
    now: datetime | None = None,
) -> Silence:
    """Maintenance: no alerts for this customer (or its groups) until `until`."""
    now = now or timezone.now()
    if until <= now:
        raise AlertsError("The end of the mute must be in the future.")
    if until - now > timedelta(days=31):
        raise AlertsError("A mute lasts at most 31 days.")
    with transaction.atomic():
        for old in Silence.objects.filter(
            customer=customer, kind=SilenceKind.MUTE, ended_at__isnull=True
        ):
            _end(old, SilenceEnd.REPLACED, now, actor, ip)
        mute = Silence.objects.create(
            kind=SilenceKind.MUTE,
            customer=customer,
            note=note[:300],
            created_at=now,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            created_by_name=_who(actor),
            expires_at=until,
        )
        audit_record(
            action=AuditAction.ALERT_MUTE,
            actor=actor,
            ip=ip,
            customer=customer,
            detail=f"muted until {timezone.localtime(until):%Y-%m-%d %H:%M %Z}: {note}"[:300],
        )
        overlay_changed()
    return mute


def silence_end(*, silence: Silence, actor=None, ip: str | None = None) -> Silence:
    """Clear an acknowledgement or end a mute now."""
    if not silence.is_active():
        raise AlertsError("This has already ended.")
    with transaction.atomic():
        _end(silence, SilenceEnd.CLEARED, timezone.now(), actor, ip)
    return silence


def silences_expire(*, now: datetime | None = None) -> int:
    """End what expired (audited once each, by "system")."""
    now = now or timezone.now()
    expired = list(
        Silence.objects.filter(ended_at__isnull=True, expires_at__lte=now).select_related(
            "customer"
        )[:500]
    )
    with transaction.atomic():
        for silence in expired:
            _end(silence, SilenceEnd.EXPIRED, now)
    return len(expired)


def active_silences(customer: Customer, now: datetime | None = None) -> list[Silence]:
    now = now or timezone.now()
    return [
        s
        for s in Silence.objects.filter(customer=customer, ended_at__isnull=True)
        if s.is_active(now)
    ]


# --- deliveries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryOutcome:
    state: str
    retry_in: float | None = None


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Full jitter between 0 and min(cap, base * 2**attempt), never below Retry-After."""
    ceiling = min(settings.ALERT_RETRY_MAX, settings.ALERT_RETRY_BASE * 2**attempt)
    return max(random.uniform(0, ceiling), retry_after or 0.0)


def delivery_attempt(*, delivery_id: int) -> DeliveryOutcome:
    """One attempt of one delivery: idempotent (a delivery no longer pending is left alone),
    exclusive (a lease on the row), logged (DeliveryAttempt)."""
    now = timezone.now()
    lease = now + timedelta(
        seconds=settings.ALERT_CONNECT_TIMEOUT + settings.ALERT_READ_TIMEOUT + 30
    )
    taken = (
        Delivery.objects.filter(pk=delivery_id, state=DeliveryState.PENDING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        .update(lease_until=lease)
    )
    delivery = (
        Delivery.objects.select_related("event", "channel", "event__customer")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None:
        return DeliveryOutcome("gone")
    if not taken:
        return DeliveryOutcome(delivery.state)
    late = _late_reason(delivery, now)
    if late:
        _finish(delivery, DeliveryState.SUPPRESSED, reason=late)
        return DeliveryOutcome(DeliveryState.SUPPRESSED)
    result = _send(delivery)
    return _record(delivery, result, now)


def _late_reason(delivery: Delivery, now: datetime) -> str:
    """A mute or an incident that began after the delivery was queued still holds it."""
    event = delivery.event
    if event.kind in (EventKind.TEST, EventKind.UPSTREAM_DOWN, EventKind.UPSTREAM_UP):
        return ""
    if event.customer is None:
        return ""
    context = _Suppression(
        event.customer,
        list(event.customer.silences.filter(kind=SilenceKind.MUTE, ended_at__isnull=True)),
        now,
    )
    if context.silences:
        return context.reason(event, None)
    unknown = Status.UNKNOWN in (event.from_status, event.to_status)
    if context.incident and not event.group_id and unknown:
        return f"Site24x7 API failing in {context.incident.data_centre}"
    return ""


@sensitive_variables("url", "secret")
def _send(delivery: Delivery) -> messages.SendResult:
    channel, event = delivery.channel, delivery.event
    message = messages.compose(event)
    if channel.kind == ChannelKind.EMAIL:
        subject, body = messages.email_parts(message)
        return messages.send_email(channel.recipient_list(), subject, body)
    try:
        url = secret_open(ciphertext=channel.url_ciphertext, fingerprint=channel.url_fingerprint)
        secret = ""
        if channel.kind == ChannelKind.WEBHOOK and channel.signing_ciphertext:
            secret = secret_open(
                ciphertext=channel.signing_ciphertext, fingerprint=channel.signing_fingerprint
            )
    except DecryptionError:
        return messages.SendResult(False, error="the stored URL does not decrypt with the keys")
    if channel.kind == ChannelKind.SLACK:
        payload = messages.slack_payload(message)
    elif channel.kind == ChannelKind.TEAMS:
        payload = messages.teams_payload(message)
    else:
        payload = messages.webhook_payload(event, message, delivery.pk)
    headers = {"X-MSP-Delivery": str(delivery.pk), "X-MSP-Event": event.kind}
    return messages.send_json(url, payload, headers=headers, secret=secret)


def _record(delivery: Delivery, result: messages.SendResult, now: datetime) -> DeliveryOutcome:
    number = delivery.attempts + 1
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=number,
        at=now,
        ok=result.ok,
        http_status=result.http_status,
        error=result.error[:300],
        duration=timedelta(seconds=result.duration),
    )
    delivery.attempts = number
    delivery.last_http_status = result.http_status
    delivery.last_error = result.error[:300]
    if result.ok:
        delivery.sent_at = timezone.now()
        _finish(delivery, DeliveryState.SENT)
        return DeliveryOutcome(DeliveryState.SENT)
    if result.transient and number < settings.ALERT_MAX_ATTEMPTS:
        delay = retry_delay(number - 1, result.retry_after)
        _finish(delivery, DeliveryState.PENDING, next_at=now + timedelta(seconds=delay))
        logger.info(
            "alerts: delivery %s attempt %d failed (%s); retry in %.0f s",
            delivery.pk,
            number,
            result.error,
            delay,
        )
        return DeliveryOutcome(DeliveryState.PENDING, retry_in=delay)
    _finish(delivery, DeliveryState.FAILED)
    logger.warning(
        "alerts: delivery %s to channel %s failed after %d attempts: %s",
        delivery.pk,
        delivery.channel_id,
        number,
        result.error,
    )
    return DeliveryOutcome(DeliveryState.FAILED)


def _finish(delivery: Delivery, state: str, *, reason: str = "", next_at=None) -> None:
    delivery.state = state
    if reason:
        delivery.reason = reason[:100]
    delivery.next_attempt_at = next_at  # a pending retry: the sweep leaves it alone until then
    delivery.lease_until = None
    delivery.save(
        update_fields=[
            "state",
            "reason",
            "attempts",
            "last_http_status",
            "last_error",
            "sent_at",
            "next_attempt_at",
            "lease_until",
        ]
    )


# --- what a user last saw ------------------------------------------------------------------------


SEEN_TOUCH_EVERY = 60


def _seen_key(user) -> str:
    """Per user, and per user row: a user id used again (a restored or recreated database
    beside a Redis that kept its keys) never reads another user's visit."""
    joined = int(user.date_joined.timestamp()) if getattr(user, "date_joined", None) else 0
    return f"alerts:seen:{user.pk}:{joined}"


def user_seen(*, user, page_load: bool, now: datetime | None = None) -> datetime | None:
    """The end of the user's previous visit (None before the first), for "since you last
    looked". Read only (SEC-03: a GET changes nothing): for a full grid page load, the value
    its visit keeps once the page records it (`user_seen_touch`, the page's POST)."""
    if not getattr(user, "is_authenticated", False):
        return None
    now = now or timezone.now()
    seen = _seen_row(user)
    if not page_load:
        return seen[1] if seen else None
    return _visit_start(seen, now) if seen else now  # the first look: nothing stands out


def user_seen_touch(*, user, now: datetime | None = None) -> None:
    """Record a full grid page load (the page POSTs it once shown): it extends the current
    visit, and a load more than SEEN_VISIT_GAP after the last one starts a new visit. Writes
    at most once a minute per user."""
    now = now or timezone.now()
    seen = _seen_row(user)
    seen_at, previous_at = seen or (None, None)
    new_previous = _visit_start(seen, now) if seen else now  # the first look: from now
    if seen and new_previous == previous_at and (now - seen_at).total_seconds() < SEEN_TOUCH_EVERY:
        return
    updated = UserSeen.objects.filter(user_id=user.pk).update(seen_at=now, previous_at=new_previous)
    if not updated:  # the first look, or a cached row that is gone: one INSERT, no savepoint
        UserSeen.objects.bulk_create(
            [UserSeen(user_id=user.pk, seen_at=now, previous_at=new_previous)],
            ignore_conflicts=True,
        )
    cache_set(_seen_key(user), (now, new_previous), 3600)


def _seen_row(user) -> tuple:
    """(seen_at, previous_at) of the user's UserSeen row, () without one (cached)."""
    key = _seen_key(user)
    cached = cache_get(key)
    if cached is None:
        row = UserSeen.objects.filter(user_id=user.pk).values_list("seen_at", "previous_at")
        cached = row.first() or ()
        cache_set(key, cached, 3600)
    return cached


def _visit_start(seen: tuple, now: datetime) -> datetime:
    """The previous visit's end as of a page load at `now`: the last load, if it was more
    than SEEN_VISIT_GAP ago (a new visit); else what the current visit started from."""
    seen_at, previous_at = seen
    return seen_at if now - seen_at > timedelta(seconds=settings.SEEN_VISIT_GAP) else previous_at


def user_mark_seen(*, user, now: datetime | None = None) -> None:
    """ "Mark all as seen": nothing that changed before now stands out any more."""
    now = now or timezone.now()
    UserSeen.objects.update_or_create(
        user_id=user.pk, defaults={"seen_at": now, "previous_at": now}
    )
    cache_set(_seen_key(user), (now, now), 3600)


# --- the sweep (beat, every minute) --------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    expired: int
    requeued: int
    incidents_closed: int
    pruned: int

    def __str__(self):
        return (
            f"expired={self.expired} requeued={self.requeued} "
            f"incidents_closed={self.incidents_closed} pruned={self.pruned}"
        )


LOST_AFTER = 300
"""Seconds past its due time after which a pending delivery's task counts as lost."""


def alerts_sweep(*, now: datetime | None = None) -> SweepResult:
    """Expire acknowledgements and mutes, re-check open incidents (customers may have stopped
    being refreshed), queue again deliveries whose task was lost, prune old logs."""
    now = now or timezone.now()
    expired = silences_expire(now=now)
    closed = 0
    for dc in UpstreamIncident.objects.filter(ended_at__isnull=True).values_list(
        "data_centre", flat=True
    ):
        with transaction.atomic():
            closed += len(_upstream_check(dc, now, failed=False))
        overlay_changed()
    overdue = now - timedelta(seconds=LOST_AFTER)
    lost = list(
        Delivery.objects.filter(state=DeliveryState.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=overdue))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .values_list("pk", flat=True)[:500]
    )
    with transaction.atomic():
        Delivery.objects.filter(pk__in=lost).update(next_attempt_at=now)
        _enqueue(lost)
    horizon = now - timedelta(days=settings.ALERT_LOG_DAYS)
    pruned, _ = AlertEvent.objects.filter(at__lt=horizon).delete()
    DataGap.objects.filter(end__lt=now - timedelta(days=400)).delete()
    return SweepResult(expired, len(lost), closed, pruned)
