"""What the alerts add to the grid and the customer page (the `portals.signals.grid_loaded`
and `customer_page_loaded` receivers): acknowledgement and mute badges, flapping, "since you
last looked", the optional availability column, the Site24x7 incident banner, and the
toolbar / row-menu / panel templates.

Queries: the acknowledgements, mutes, flapping subjects and open incidents are one cached
snapshot (rebuilt with three queries after a change, then shared by every poll of every
user); the last-seen time is cached per user and written only on full page loads, at most
once a minute. In the steady state the grid's polls cost no extra query. The availability
column (`?avail=24h|7d|30d`) costs three queries a minute (cached)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from msp_dashboard.site24x7 import Status
from portals.queries import Annotation, as_status, clock, exact_time, is_problem, url_maker

from . import availability
from .models import AlertState, Silence, SilenceKind, UpstreamIncident
from .services import OVERLAY_VERSION, cache_get, cache_set, user_seen, version

PERM_ACK = "alerts.acknowledge"
AVAIL_PARAM = "avail"


@dataclass(frozen=True)
class SilenceInfo:
    pk: int
    kind: str
    group_id: str
    group_name: str
    status: int | None
    note: str
    by: str
    at: datetime
    expires_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True)
class FlapInfo:
    group_id: str
    group_name: str
    changes: tuple[datetime, ...]

    def count(self, now: datetime) -> int:
        horizon = now - timedelta(seconds=settings.ALERT_FLAP_WINDOW)
        return sum(1 for at in self.changes if at > horizon)

    def flapping(self, now: datetime) -> bool:
        return self.count(now) >= settings.ALERT_FLAP_CHANGES


@dataclass(frozen=True)
class IncidentInfo:
    data_centre: str
    since: datetime
    failing: int
    considered: int
    error_kind: str


@dataclass(frozen=True)
class Overlay:
    silences: dict[int, tuple[SilenceInfo, ...]]
    flaps: dict[int, tuple[FlapInfo, ...]]
    incidents: tuple[IncidentInfo, ...]


def overlay_load() -> Overlay:
    key = f"alerts:overlay:{version(OVERLAY_VERSION)}"
    found = cache_get(key)
    if found is None:
        found = _build()
        cache_set(key, found, 300)
    return found


def _build() -> Overlay:
    silences: dict[int, list[SilenceInfo]] = defaultdict(list)
    for s in Silence.objects.filter(ended_at__isnull=True).order_by("created_at"):
        silences[s.customer_id].append(
            SilenceInfo(
                s.pk,
                s.kind,
                s.group_id,
                s.group_name,
                s.status,
                s.note,
                s.created_by_name,
                s.created_at,
                s.expires_at,
            )
        )
    flaps: dict[int, list[FlapInfo]] = defaultdict(list)
    for state in AlertState.objects.filter(flapping=True).only(
        "customer_id", "group_id", "group_name", "changes"
    ):
        times = tuple(datetime.fromisoformat(c) for c in state.changes)
        flaps[state.customer_id].append(FlapInfo(state.group_id, state.group_name, times))
    incidents = tuple(
        IncidentInfo(i.data_centre, i.since, i.failing, i.considered, i.error_kind)
        for i in UpstreamIncident.objects.filter(ended_at__isnull=True).order_by("data_centre")
    )
    return Overlay(
        {k: tuple(v) for k, v in silences.items()},
        {k: tuple(v) for k, v in flaps.items()},
        incidents,
    )


# --- the grid ----------------------------------------------------------------------------------


def _is_page_load(request) -> bool:
    match = getattr(request, "resolver_match", None)
    return bool(match and match.view_name == "portals:grid" and not request.htmx)


def _period_key(filters) -> str:
    value = dict(getattr(filters, "extra", ()) or ()).get(AVAIL_PARAM, "")
    return value if value in availability.PERIODS else ""


def grid_availability(user, key: str, now: datetime) -> dict[int, availability.Availability]:
    """{customer id: availability of its worst status over `key`} for the customers this user
    sees; four queries a minute at most (cached)."""
    if not key:
        return {}
    from portals.access import customers_for_user

    visible = customers_for_user(user).filter(is_active=True)
    customers = [
        SimpleNamespace(**row)
        for row in visible.values(
            "pk", "name", "data_centre", "data_fetched_at", "last_success_at"
        ).order_by("pk")
    ]
    ids = ",".join(str(c.pk) for c in customers)
    digest = hashlib.sha256(ids.encode()).hexdigest()[:16]
    cache_key = f"alerts:avail:{key}:{digest}:{int(now.timestamp() // 60)}"
    found = cache_get(cache_key)
    if found is None:
        period = availability.period_from({"period": key}, now=now)
        found = availability.customer_summary(customers, period, now=now)
        cache_set(cache_key, found, 120)
    return found


def grid_annotator(request, filters, now: datetime):
    """The `portals.signals.grid_loading` receiver's callable: per customer, the mute,
    acknowledgement, flapping, "new since you looked" and availability badges, and whether its
    problem is taken care of (quiet: sorted below the problems nobody took yet)."""
    overlay = overlay_load()
    previous = user_seen(user=request.user, page_load=_is_page_load(request), now=now)
    key = _period_key(filters)
    avail = grid_availability(request.user, key, now)

    def annotate(customer, groups, freshness) -> Annotation | None:
        badges: list[tuple[str, str, str]] = []
        css: list[str] = []
        display = Status.UNKNOWN if freshness.stale else as_status(customer.worst_status)
        problem = is_problem(display)
        quiet = _silence_badges(
            badges, css, overlay.silences.get(customer.pk, ()), groups, freshness.stale, now
        )
        _flap_badge(badges, css, overlay.flaps.get(customer.pk, ()), now)
        since = customer.worst_status_since
        if previous and since and since > previous:
            word = ("Stale" if freshness.stale else display.label) if problem else "Recovered"
            label = f"New: {word}" if problem else word
            badges.append(("new", label, f"Changed at {exact_time(since)}, after your last look"))
            css.append("is-new")
        if customer.pk in avail:
            result = avail[customer.pk]
            text = f"{result.percent_text} · {availability.PERIOD_LABELS[key]}"
            badges.append((f"avail-{result.slug}", text, result.summary))
        if not badges and not css:
            return None
        return Annotation(tuple(badges), " ".join(css), quiet and problem)

    return annotate


def grid_extras(request, grid) -> None:
    """The `portals.signals.grid_loaded` receiver: the incident banner, the toolbar and row
    menu templates and their data."""
    overlay = overlay_load()
    for incident in overlay.incidents:
        _banner(grid, incident)
    ext = grid.extensions
    ext.setdefault("filters", []).append("alerts/_grid_filters.html")
    ext.setdefault("toolbar", []).append("alerts/_grid_toolbar.html")
    if request.user.has_perm(PERM_ACK):
        ext.setdefault("menu", []).append("alerts/_row_menu.html")
    ext["alerts"] = {
        "new": sum(1 for r in grid.rows if "is-new" in r.css.split()),
        "avail": _period_key(grid.filters),
        "periods": availability.PERIOD_LABELS,
        "ack_url": _pattern("alerts:acknowledge"),
        "mute_url": _pattern("alerts:mute"),
        "seen_touch_url": reverse("alerts:seen-touch"),
    }


def _pattern(name: str) -> str:
    """The URL with "{pk}" where the customer goes (static/js/app.js fills the row menu)."""
    maker = url_maker(name)
    return maker("{pk}") if maker else ""


def _silence_badges(badges, css, silences, groups, stale: bool, now: datetime) -> bool:
    """Mute and acknowledgement badges; True when the customer's problem is taken care of
    (muted, acknowledged, or every problem group acknowledged)."""
    active = [s for s in silences if s.active(now)]
    mute = next((s for s in active if s.kind == SilenceKind.MUTE), None)
    ack = next((s for s in active if s.kind == SilenceKind.ACK and not s.group_id), None)
    if mute:
        note = f": {mute.note}" if mute.note else ""
        badges.append(
            ("muted", f"Muted until {clock(mute.expires_at)}",
             f"Maintenance set by {mute.by} at {clock(mute.at)}{note}; no alerts until it ends")
        )  # fmt: skip
        css.append("is-muted")
    if ack:
        badges.append(("acked", f"Acked by {ack.by} · {clock(ack.at)}", _ack_detail(ack)))
        css.append("is-acked")
    group_acks = {s.group_id: s for s in active if s.kind == SilenceKind.ACK and s.group_id}
    # group tuples: (customer_id, group_id, name, status, monitors, error_monitors, top, since)
    problems = [] if stale else [g for g in groups if is_problem(as_status(g[3]))]
    acked = [g for g in problems if g[1] in group_acks]
    for group in acked[:2]:
        s = group_acks[group[1]]
        badges.append(("acked", f"{group[2]}: acked by {s.by}", _ack_detail(s)))
    if len(acked) > 2:
        badges.append(("acked", f"+{len(acked) - 2} groups acked", ""))
    every_group = bool(problems) and len(acked) == len(problems)
    if every_group and not ack:
        css.append("is-acked")
    return bool(mute or ack or every_group)


def _ack_detail(ack: SilenceInfo) -> str:
    text = f"Acknowledged by {ack.by} at {exact_time(ack.at)}"
    if ack.note:
        text += f": {ack.note}"
    if ack.expires_at:
        text += f" (expires {clock(ack.expires_at)})"
    return text + ". Ends by itself when the status recovers or gets worse."


def _flap_badge(badges, css, flaps, now: datetime) -> None:
    live = [f for f in flaps if f.flapping(now)]
    if not live:
        return
    names = [f.group_name for f in live if f.group_id]
    label = "Flapping" + (f": {', '.join(names[:2])}" if names else "")
    if len(names) > 2:
        label += f" +{len(names) - 2}"
    most = max(f.count(now) for f in live)
    minutes = settings.ALERT_FLAP_WINDOW // 60
    detail = f"{most} status changes in the last {minutes} min; alerts held until it settles"
    badges.append(("flapping", label, detail))
    css.append("is-flapping")


def _banner(grid, incident: IncidentInfo) -> None:
    what = f" ({incident.error_kind} errors)" if incident.error_kind else ""
    grid.banners.append(
        {
            "kind": "upstream",
            "data_centre": incident.data_centre,
            "since": incident.since.isoformat(),
            "text": (
                f"Site24x7 API in data centre {incident.data_centre} is failing since "
                f"{clock(incident.since)}"
            ),
            "detail": (
                f"{incident.failing} of {incident.considered} customers there cannot be "
                f"refreshed{what}. Site24x7's trouble, not theirs: their alerts are grouped "
                f"into one notice, and their last known statuses show as Stale."
            ),
        }
    )


# --- the customer page ---------------------------------------------------------------------------


def customer_panel_slot(request, page) -> None:
    """The `portals.signals.customer_page_loaded` receiver: a placeholder the page loads on
    its own (alerts:customer-panel), so the customer page's queries stay as they are."""
    page.panels.append(
        {
            "template": "alerts/_customer_panel_slot.html",
            "url": reverse("alerts:customer-panel", args=[page.customer.pk]),
        }
    )


def customer_panel(request, customer, now: datetime | None = None) -> dict:
    """What the customer's alerts panel shows."""
    from portals.detail import build_customer_page

    now = now or timezone.now()
    page = build_customer_page(customer, now=now)
    overlay = overlay_load()
    silences = [s for s in overlay.silences.get(customer.pk, ()) if s.active(now)]
    return {
        "customer": customer,
        "page": page,
        "silences": silences,
        "mute": next((s for s in silences if s.kind == SilenceKind.MUTE), None),
        "flapping": [f for f in overlay.flaps.get(customer.pk, ()) if f.flapping(now)],
        "availability": _customer_availability(customer, now),
        "can_ack": request.user.has_perm(PERM_ACK),
    }


PAGE_PERIODS = ("24h", "7d", "30d")


def _customer_availability(customer, now: datetime) -> list[dict]:
    """Rows of (subject, 24 h, 7 d, 30 d) availabilities; cached a minute."""
    key = f"alerts:cust-avail:{customer.pk}:{int(now.timestamp() // 60)}"
    found = cache_get(key)
    if found is None:
        periods = [availability.period_from({"period": p}, now=now) for p in PAGE_PERIODS]
        by_period = availability.reports([customer], periods, groups=True, now=now)
        found = []
        for index, row in enumerate(by_period[PAGE_PERIODS[0]]):
            found.append(
                {
                    "group_id": row.group_id,
                    "name": row.group or "All groups (worst status)",
                    "values": [by_period[p][index].availability for p in PAGE_PERIODS],
                }
            )
        cache_set(key, found, 120)
    return found
