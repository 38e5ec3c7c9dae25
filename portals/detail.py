"""The read side of the customer page: groups, the 24-hour timeline per group, the refresh
outcome, credentials and the customer's slice of the audit trail.

A fixed number of queries (groups, status changes, credentials, audit events), whatever the
number of groups or changes; the timeline is computed in Python and drawn as SVG rectangles
(no inline style, so a strict Content-Security-Policy holds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Case, IntegerField, Q, Value, When
from django.utils import timezone

from msp_dashboard.site24x7 import Status, get_data_centre
from tokens.models import AuditEvent, Credential, CredentialKind, CredentialState

from .models import AuthGeneration, StatusChange
from .queries import (
    Cell,
    age_text,
    as_status,
    clock,
    customer_badges,
    exact_time,
    is_problem,
)
from .status import customer_freshness

WINDOW = timedelta(hours=24)
WIDTH = 1440  # SVG units across the window: one per minute
MAX_CHANGES = 500
MAX_AUDIT = 15


@dataclass
class Segment:
    x: float
    width: float
    status: Status
    start: datetime
    end: datetime

    @property
    def slug(self) -> str:
        return self.status.slug

    @property
    def svg_x(self) -> str:
        return f"{self.x:.2f}"

    @property
    def svg_width(self) -> str:
        return f"{self.width:.2f}"

    @property
    def title(self) -> str:
        minutes = int((self.end - self.start).total_seconds() // 60)
        span = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
        return f"{self.status.label} {clock(self.start)}–{clock(self.end)} ({span})"


@dataclass
class Timeline:
    key: str  # group_id, or "" for the customer's worst status
    name: str
    current: Status
    segments: list[Segment] = field(default_factory=list)
    changes: int = 0
    removed: bool = False
    customer_level: bool = False

    @property
    def slug(self) -> str:
        return self.current.slug

    @property
    def label(self) -> str:
        return self.current.label


def _segments(start_status, changes, start, end) -> list[Segment]:
    """Rectangles for the window; `start_status` None means "not observed yet" (no data, so
    nothing is drawn until the first observation)."""
    span = (end - start).total_seconds()
    points = [(start, start_status)] + [(c.at, as_status(c.to_status)) for c in changes]
    segments = []
    for (at, status), nxt in zip(points, points[1:] + [(end, None)], strict=True):
        at = max(at, start)
        if nxt[0] <= at or status is None:
            continue
        x = (at - start).total_seconds() / span * WIDTH
        width = (nxt[0] - at).total_seconds() / span * WIDTH
        segments.append(Segment(round(x, 2), round(max(width, 0.5), 2), status, at, nxt[0]))
    return segments


def build_timelines(customer, groups, changes, now: datetime) -> list[Timeline]:
    """One timeline for the customer's worst status, then one per group (current groups
    first, worst first; groups that vanished upstream after them)."""
    start = now - WINDOW
    by_key: dict[str, list] = {}
    names: dict[str, str] = {}
    for change in sorted(changes, key=lambda c: (c.at, c.pk)):
        by_key.setdefault(change.group_id, []).append(change)
        names.setdefault(change.group_id, change.group_name)

    def timeline(key, name, current, **extra):
        rows = by_key.get(key, [])
        first = current
        if rows:
            first = None if rows[0].from_status is None else as_status(rows[0].from_status)
        return Timeline(key, name, current, _segments(first, rows, start, now), len(rows), **extra)

    worst = as_status(customer.worst_status)
    lines = [timeline("", "Customer (worst status)", worst, customer_level=True)]
    known = set()
    for group in groups:
        known.add(group.group_id)
        lines.append(timeline(group.group_id, group.name, as_status(group.status)))
    for key in by_key:
        if key and key not in known:
            last = as_status(by_key[key][-1].to_status)
            lines.append(timeline(key, names[key], last, removed=True))
    return lines


@dataclass
class ChangeRow:
    at: datetime
    group_name: str
    group_id: str
    from_status: Status | None
    to_status: Status

    @property
    def clock(self) -> str:
        return timezone.localtime(self.at).strftime("%H:%M:%S")

    @property
    def exact(self) -> str:
        return exact_time(self.at)


@dataclass
class CustomerPage:
    customer: object
    now: datetime
    freshness: object
    display: Status
    worst: Status
    badges: list
    top_groups: list[Cell]
    subgroups: list[Cell]
    timelines: list[Timeline]
    changes: list[ChangeRow]
    changes_truncated: bool
    credentials: list[Credential]
    audit: list[AuditEvent]
    site24x7_url: str
    axis: list[str]
    nodata: Segment | None = None  # the part of the window with no fresh data (stale)
    panels: list[dict] = field(default_factory=list)  # other apps' ({"template": ...}, signals)

    @property
    def label(self) -> str:
        return "Stale" if self.freshness.stale else self.display.label

    @property
    def slug(self) -> str:
        return "stale" if self.freshness.stale else self.display.slug

    @property
    def problem(self) -> bool:
        return is_problem(self.display)

    @property
    def age_text(self) -> str:
        return age_text(self.freshness.age)

    @property
    def fetched_at(self):
        return self.customer.data_fetched_at or self.customer.last_success_at

    @property
    def fetched_exact(self) -> str:
        return exact_time(self.fetched_at) if self.fetched_at else "never refreshed"

    @property
    def duration_text(self) -> str:
        duration = self.customer.last_duration
        if duration is None:
            return ""
        seconds = duration.total_seconds()
        return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _cells(groups, stale: bool, top: bool) -> list[Cell]:
    cells = [
        Cell(
            g.group_id,
            g.name,
            as_status(g.status),
            g.monitors,
            g.error_monitors,
            g.top_group,
            g.status_since,
            stale,
        )
        for g in groups
        if g.top_group == top
    ]
    cells.sort(key=lambda c: (c.status.severity, c.name.casefold()))
    return cells


def customer_credentials(customer) -> list[Credential]:
    """The customer's portal tokens and the MSP identity that reads it: one query."""
    owned = Q(customer=customer)
    if customer.msp_credential_id:
        owned |= Q(pk=customer.msp_credential_id)
    state_rank = Case(
        When(state=CredentialState.ACTIVE, then=Value(0)),
        When(state=CredentialState.INVALID, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return list(
        Credential.objects.filter(owned)
        .defer("secret_ciphertext", "client_secret_ciphertext")
        .select_related("created_by")
        .annotate(state_rank=state_rank)
        .order_by("state_rank", "-created_at", "-id")[:50]
    )


def _credential_state(customer, credentials) -> str | None:
    """What `with_credential_state` annotates on the grid, from the list already loaded."""
    if customer.auth_generation == AuthGeneration.OAUTH:
        msp = next((c for c in credentials if c.pk == customer.msp_credential_id), None)
        return msp.state if msp and msp.state != CredentialState.REVOKED else None
    tokens = [c for c in credentials if c.customer_id == customer.pk]
    states = {c.state for c in tokens if c.kind == CredentialKind.PORTAL_AUTHTOKEN}
    for state in (CredentialState.ACTIVE, CredentialState.INVALID):
        if state in states:
            return state
    return None


def site24x7_url(customer) -> str:
    try:
        return get_data_centre(customer.data_centre).web_url
    except ValueError:
        return ""


def build_customer_page(customer, *, now: datetime | None = None) -> CustomerPage:
    now = now or timezone.now()
    freshness = customer_freshness(customer, now)
    worst = as_status(customer.worst_status)
    display = Status.UNKNOWN if freshness.stale else worst
    groups = list(customer.groups.all())
    changes = list(
        StatusChange.objects.filter(customer=customer, at__gte=now - WINDOW).order_by("-at", "-id")[
            : MAX_CHANGES + 1
        ]
    )
    truncated = len(changes) > MAX_CHANGES
    changes = changes[:MAX_CHANGES]
    credentials = customer_credentials(customer)
    customer.credential_state = _credential_state(customer, credentials)
    ordered = sorted(groups, key=lambda g: (as_status(g.status).severity, g.name.casefold()))
    group_names = {g.group_id: g.name for g in groups}
    return CustomerPage(
        customer=customer,
        now=now,
        freshness=freshness,
        display=display,
        worst=worst,
        badges=customer_badges(customer, freshness, now),
        top_groups=_cells(groups, freshness.stale, True),
        subgroups=_cells(groups, freshness.stale, False),
        timelines=build_timelines(customer, ordered, changes, now),
        changes=[
            ChangeRow(
                c.at,
                group_names.get(c.group_id, c.group_name) if c.group_id else "Customer",
                c.group_id,
                as_status(c.from_status) if c.from_status is not None else None,
                as_status(c.to_status),
            )
            for c in changes
        ],
        changes_truncated=truncated,
        credentials=credentials,
        audit=list(AuditEvent.objects.filter(customer_id=customer.pk)[:MAX_AUDIT]),
        site24x7_url=site24x7_url(customer),
        axis=[clock(now - timedelta(hours=h)) for h in (24, 18, 12, 6)] + ["now"],
        nodata=_nodata(customer, freshness, now),
    )


def _nodata(customer, freshness, now: datetime) -> Segment | None:
    """When stale: the stretch since the last fresh data, drawn hatched over every bar."""
    if not freshness.stale:
        return None
    start = now - WINDOW
    fetched = customer.data_fetched_at or customer.last_success_at
    since = max(fetched or start, start)
    if since >= now:
        return None
    x = (since - start).total_seconds() / WINDOW.total_seconds() * WIDTH
    return Segment(round(x, 2), round(max(WIDTH - x, 0.5), 2), Status.UNKNOWN, since, now)
