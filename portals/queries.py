"""The read side of the grid: one customer query plus one group query, shaped in Python.

PERF-01: the number of SQL queries does not depend on the number of customers or groups. The
customer query carries the credential state as correlated subqueries (no query per row), the
OAuth identity comes through a join, the top groups come in one query as plain tuples.
Filtering, sorting and the summary happen in Python on those rows: the summary counts every
active customer, whatever the filters, so it works as a filter bar. No upstream call here.

Issue 7 (a grid that stays fast at 1,000 customers): each request still reads every row from
the database (the same two queries), but a row is built and its markup rendered only once per
content. `RowCache` is keyed on everything a row's rendering depends on: the row's values and
its groups' values exactly as this request read them, the clock-derived state (stale,
throttled, paused, refreshing) at this request's `now`, and the settings that shape the text.
An entry is found only when all of that is equal, so a cached row is never older than the
database: there is nothing to invalidate. The texts that change with the clock alone ("2 min
ago", "for 3 h") are markers in the cached markup, filled in per response (`fill_times`) and
kept current in the browser from their `<time datetime>`."""

from __future__ import annotations

import copy
import hashlib
import re
from collections import Counter, defaultdict, namedtuple
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from html import escape
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import FloatField, Func, OuterRef, Subquery
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from msp_dashboard.site24x7 import STATUS_SEVERITY, Status
from tokens.crypto import masked
from tokens.models import Credential, CredentialKind, CredentialState

from .models import AuthGeneration, Customer, MonitorGroup
from .services import with_credential_state
from .status import Freshness, customer_freshness

# Plain strings for the hot loops (comparing with a Choices member costs more).
ACTIVE, INVALID, OAUTH = str(CredentialState.ACTIVE), str(CredentialState.INVALID), "oauth"

PROBLEM_SEVERITY = Status.UNKNOWN.severity
"""Down, Critical, Trouble, Configuration Error and Stale/Unknown are problems."""

SORTS = {"status": "Worst first", "name": "Name", "age": "Oldest data first"}
STATUS_BY_SLUG = {status.slug: status for status in Status}
STATUS_BY_SLUG["stale"] = Status.UNKNOWN


# --- presentation of a status ----------------------------------------------------------------


def status_label(status: Status, *, customer_level: bool = False) -> str:
    """The word shown next to the colour and icon."""
    if status is Status.UNKNOWN and customer_level:
        return "Stale/Unknown"
    return status.label


_STATUS_BY_CODE = {int(status): status for status in Status}


def as_status(code: int | None) -> Status:
    """The stored code as a Status (a dict look-up: this runs for every cell of every poll)."""
    return _STATUS_BY_CODE.get(code, Status.UNKNOWN)


def is_problem(status: Status) -> bool:
    return status.severity <= PROBLEM_SEVERITY


# --- time as people read it ------------------------------------------------------------------


def span_text(span: timedelta) -> str:
    """ "45 s", "2 min", "3 h", "2 d"."""
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def age_text(age: timedelta | None) -> str:
    """ "just now", "45 s ago", "2 min ago", "3 h ago", "2 d ago", or "never"."""
    if age is None:
        return "never"
    if age.total_seconds() < 10:
        return "just now"
    return f"{span_text(age)} ago"


def exact_time(moment: datetime | None, tz=None) -> str:
    """ "2026-11-27 14:02:11 UTC" in the dashboard's time zone (pass `tz` in loops)."""
    if moment is None:
        return ""
    local = moment.astimezone(tz or timezone.get_current_timezone())
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def clock(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%H:%M")


def local_moment(moment: datetime, tz) -> str:
    """ "27 Nov 14:02" in the dashboard's time zone."""
    return f"{moment.astimezone(tz):%d %b %H:%M}"


# --- filters, kept in the URL -----------------------------------------------------------------


EXTRA_PARAMS: set[str] = set()
"""Grid parameters of other apps (e.g. the alerts' `avail`), kept in every grid URL; an app
adds its names when it starts (AppConfig.ready)."""


@dataclass(frozen=True)
class GridFilters:
    statuses: frozenset[Status] = frozenset()
    q: str = ""
    problems: bool = False
    sort: str = "status"
    wall: bool = False
    extra: tuple[tuple[str, str], ...] = ()  # EXTRA_PARAMS as given, e.g. (("avail", "24h"),)

    @classmethod
    def from_query(cls, params: Mapping) -> GridFilters:
        statuses = set()
        for value in _getlist(params, "status"):
            for slug in value.split(","):
                if slug.strip().lower() in STATUS_BY_SLUG:
                    statuses.add(STATUS_BY_SLUG[slug.strip().lower()])
        sort = str(params.get("sort", "status"))
        return cls(
            statuses=frozenset(statuses),
            q=str(params.get("q", "")).strip()[:100],
            problems=_flag(params.get("problems")),
            sort=sort if sort in SORTS else "status",
            wall=_flag(params.get("wall")),
            extra=tuple(
                (key, str(params.get(key))[:40]) for key in sorted(EXTRA_PARAMS) if params.get(key)
            ),
        )

    @property
    def active(self) -> bool:
        """True when some customers may be hidden."""
        return bool(self.statuses or self.q or self.problems)

    @property
    def collapse_up(self) -> bool:
        """Wall screens and "problems only" fold Up groups into one chip per customer."""
        return self.wall or self.problems

    def params(self, **changes) -> list[tuple[str, str]]:
        """The canonical GET parameters, with `changes` applied (None drops one)."""
        values = {
            "status": ",".join(s.slug for s in STATUS_SEVERITY if s in self.statuses),
            "q": self.q,
            "problems": "1" if self.problems else "",
            "sort": "" if self.sort == "status" else self.sort,
            "wall": "1" if self.wall else "",
            **dict(self.extra),
        }
        for key, value in changes.items():
            values[key] = "" if value is None else str(value)
        return [(key, value) for key, value in values.items() if value]

    def querystring(self, **changes) -> str:
        return urlencode(self.params(**changes))

    def matches_status(self, status: Status) -> bool:
        if self.statuses and status not in self.statuses:
            return False
        return not (self.problems and not is_problem(status))


def _getlist(params: Mapping, key: str) -> list[str]:
    if hasattr(params, "getlist"):
        return params.getlist(key)
    value = params.get(key)
    return [value] if isinstance(value, str) else list(value or [])


def _flag(value) -> bool:
    return str(value or "").lower() in {"1", "true", "yes", "on"}


# --- the query ---------------------------------------------------------------------------------


class Epoch(Func):
    """A datetime column as seconds since 1970 (a float). Ten thousand floats are read far
    faster than ten thousand datetimes (the driver's and Django's converters); the few that a
    response needs as datetimes are made in Python (`moment`)."""

    output_field = FloatField()
    template = "EXTRACT(EPOCH FROM %(expressions)s)::double precision"  # PostgreSQL

    @cached_property
    def convert_value(self):
        # Both databases give a float (or None) already: without a converter, Django hands
        # the driver's rows on as they are instead of calling float() on each value (a
        # tenth of the grid's CPU at 1,000 customers x 10 groups).
        return self._convert_value_noop

    def as_sqlite(self, compiler, connection, **extra):
        # Django keeps UTC datetimes as text there ("2026-11-27 14:02:11.123456"): whole
        # seconds from strftime, the fraction from the text, exact to the microsecond.
        template = (
            "(CAST(strftime('%%%%s', substr(%(expressions)s, 1, 19)) AS REAL)"
            " + CAST(substr(%(expressions)s, 20) AS REAL))"
        )
        return super().as_sql(compiler, connection, template=template, **extra)


def moment(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


GROUP_FIELDS = (
    "customer_id", "group_id", "name", "status", "monitors", "error_monitors", "since_ts",
)  # fmt: skip
"""A top group's tuple on the grid: `since_ts` is status_since as an Epoch."""

CUSTOMER_TIMES = (
    "worst_status_since", "last_attempt_at", "last_success_at", "data_fetched_at",
    "throttled_until", "paused_until", "lease_until",
)  # fmt: skip
CUSTOMER_FIELDS = (
    "pk", "name", "data_centre", "auth_generation", "worst_status", "last_error",
    "consecutive_failures", "token_id", "token_last4", "credential_state",
    *(f"{name}_ts" for name in CUSTOMER_TIMES),
)  # fmt: skip


def _time_property(name: str) -> property:
    return property(lambda self: moment(getattr(self, f"{name}_ts")))


class GridCustomer(namedtuple("GridCustomer", CUSTOMER_FIELDS)):
    """What a grid row shows of a customer (and all its cache key holds of it): the values
    as read, times as Epochs, with the datetimes portals.status reads as properties."""

    __slots__ = ()


for _name in CUSTOMER_TIMES:
    setattr(GridCustomer, _name, _time_property(_name))


def grid_queryset(*, base=None):
    """Active customers with the state of the credential a refresh would use and the newest
    active portal token (for the row menu) annotated: one query, whatever their number."""
    base = Customer.objects.all() if base is None else base
    newest_active = Credential.objects.filter(
        customer=OuterRef("pk"),
        kind=CredentialKind.PORTAL_AUTHTOKEN,
        state=CredentialState.ACTIVE,
    ).order_by("-created_at", "-id")
    customers = (
        base.filter(is_active=True)
        .annotate(
            token_id=Subquery(newest_active.values("pk")[:1]),
            token_last4=Subquery(newest_active.values("secret_last4")[:1]),
            **{f"{name}_ts": Epoch(name) for name in CUSTOMER_TIMES},
        )
        .order_by()
    )
    return with_credential_state(customers)


def grid_customers(*, base=None) -> list[GridCustomer]:
    """The active customers of `base` as GridCustomer tuples: one query, no model instances
    (a thousand of them would cost more than the query)."""
    rows = grid_queryset(base=base).values_list(*CUSTOMER_FIELDS)
    return [GridCustomer._make(row) for row in rows]


def grid_groups(*, base=None) -> dict[int, list[tuple]]:
    """{customer id: [top group tuples in GROUP_FIELDS order]} for the active customers of
    `base`: one query, plain tuples (thousands of model instances would cost more than the
    query), in a stable order (a row's cache key holds them)."""
    base = Customer.objects.all() if base is None else base
    groups = MonitorGroup.objects.filter(
        customer__in=base.filter(is_active=True).values("pk"), top_group=True
    )
    groups = groups.annotate(since_ts=Epoch("status_since")).order_by("customer_id", "group_id")
    by_customer: dict[int, list[tuple]] = defaultdict(list)
    for group in groups.values_list(*GROUP_FIELDS):
        by_customer[group[0]].append(group)
    return by_customer


# --- rows ----------------------------------------------------------------------------------


@dataclass
class Badge:
    kind: str  # stale | credential-invalid | no-credential | throttled | paused
    label: str
    detail: str = ""
    until: datetime | None = None

    def as_json(self) -> dict:
        return {
            "kind": self.kind,
            "label": self.label,
            "detail": self.detail,
            "until": self.until.isoformat() if self.until else None,
        }


@dataclass(slots=True)
class Cell:
    group_id: str
    name: str
    status: Status
    monitors: int
    error_monitors: int
    top_group: bool
    status_since: datetime | None
    stale: bool

    @property
    def slug(self) -> str:
        return "stale" if self.stale else self.status.slug

    @property
    def icon(self) -> str:
        return self.status.slug

    @property
    def label(self) -> str:
        word = "Config error" if self.status is Status.CONFIG_ERROR else self.status.label
        return f"was {word}" if self.stale else word

    @property
    def count_text(self) -> str:
        if self.error_monitors:
            return f"{self.error_monitors} of {self.monitors} not up"
        return f"{self.monitors} monitor{'s' if self.monitors != 1 else ''}"

    @property
    def problem(self) -> bool:
        return is_problem(self.status)

    @property
    def title(self) -> str:
        return self.tooltip(timezone.now())

    def tooltip(self, now: datetime) -> str:
        since = f" for {span_text(now - self.status_since)}" if self.status_since else ""
        state = f"last known: {self.status.label}" if self.stale else f"{self.status.label}{since}"
        return f"{self.name}: {state}; {self.error_monitors} of {self.monitors} monitors not up"

    def grid_tooltip(self, tz) -> str:
        """The grid's tooltip: since when, as a time of day (not "for 3 h"), so that a cached
        cell stays true as the clock moves."""
        since = f" since {local_moment(self.status_since, tz)}" if self.status_since else ""
        state = f"last known: {self.status.label}" if self.stale else f"{self.status.label}{since}"
        return f"{self.name}: {state}; {self.error_monitors} of {self.monitors} monitors not up"

    def as_json(self) -> dict:
        return {
            "group_id": self.group_id,
            "name": self.name,
            "status": {"code": int(self.status), "label": self.status.label},
            "monitors": self.monitors,
            "error_monitors": self.error_monitors,
            "top_group": self.top_group,
            "status_since": self.status_since.isoformat() if self.status_since else None,
        }


@dataclass
class Row:
    pk: int
    name: str
    url: str
    worst: Status
    display: Status
    freshness: Freshness
    fetched_at: datetime | None
    last_success_at: datetime | None
    badges: list[Badge]
    cells: list[Cell]  # every top group, worst first
    data_centre: str
    oauth: bool = False
    token_id: int | None = None
    token_last4: str = ""
    shown: list[Cell] = field(default_factory=list)
    folded: list[Cell] = field(default_factory=list)  # Up groups folded into one chip
    more: int = 0  # problem groups left out on a wall screen (shown on the customer page)
    worst_since: datetime | None = None
    matched_groups: int | None = None  # set when only some groups matched a search
    css: str = ""  # classes other apps add (Annotation)
    quiet: bool = False  # a problem someone took care of (acknowledged, muted): sorts lower

    @property
    def stale(self) -> bool:
        return self.freshness.stale

    @property
    def problem(self) -> bool:
        return is_problem(self.display)

    @property
    def slug(self) -> str:
        return "stale" if self.stale else self.display.slug

    @property
    def label(self) -> str:
        return "Stale" if self.stale else self.display.label

    @property
    def age_text(self) -> str:
        """ "2 min ago" as a marker (`fill_times` writes the text for each response)."""
        return time_marker("a", self.fetched_at) if self.fetched_at else "never"

    @property
    def fetched_iso(self) -> str:
        return self.fetched_at.isoformat() if self.fetched_at else ""

    @property
    def fetched_exact(self) -> str:
        return exact_time(self.fetched_at) if self.fetched_at else "never refreshed"

    @property
    def since_text(self) -> str:
        """How long the (fresh) worst status has held, for problems: "for 2 h" (a marker)."""
        if self.stale or not self.problem or not self.worst_since:
            return ""
        return time_marker("s", self.worst_since)

    @property
    def token_masked(self) -> str:
        return masked(self.token_last4)

    @property
    def folded_title(self) -> str:
        return ", ".join(cell.name for cell in self.folded)

    @property
    def stale_note(self) -> str:
        """Why the data is stale, and what it said last (never shown as green)."""
        if not self.stale:
            return ""
        last = "" if self.fetched_at is None else f"; last known: {self.worst.label}"
        return f"{self.freshness.reason}{last}"

    def as_json(self, now: datetime) -> dict:
        age = now - self.fetched_at if self.fetched_at else None
        return {
            "id": self.pk,
            "name": self.name,
            "url": self.url,
            "data_centre": self.data_centre,
            "auth_generation": "oauth" if self.oauth else "legacy",
            "worst_status": {"code": int(self.worst), "label": self.worst.label},
            "display_status": {
                "code": int(self.display),
                "label": self.label,
                "slug": self.slug,
            },
            "problem": self.problem,
            "data_age_seconds": int(age.total_seconds()) if age is not None else None,
            "data_fetched_at": self.fetched_iso or None,
            "last_success_at": (self.last_success_at.isoformat() if self.last_success_at else None),
            "stale": self.stale,
            "staleness_reason": self.freshness.reason,
            "badges": [badge.as_json() for badge in self.badges],
            "groups": [cell.as_json() for cell in self.cells],
        }


def credential_badges(customer) -> list[Badge]:
    """From `credential_state` (portals.services.with_credential_state): the state of the
    credential a refresh would use."""
    state = getattr(customer, "credential_state", None)
    if state == ACTIVE:
        return []
    oauth = customer.auth_generation == OAUTH
    if state == INVALID:
        what = "identity" if oauth else "token"
        return [
            Badge("credential-invalid", "Credential invalid",
                  f"Site24x7 rejected this customer's {what}: replace it, then refresh")
        ]  # fmt: skip
    if oauth:
        return [Badge("no-credential", "No credential", "No OAuth identity reads it")]
    return [Badge("no-credential", "No credential", "Create or import a portal token")]


def customer_badges(customer, freshness: Freshness, now: datetime) -> list[Badge]:
    badges = []
    if freshness.stale:
        badges.append(Badge("stale", "Stale", freshness.reason))
    badges.extend(credential_badges(customer))
    if customer.throttled_until and customer.throttled_until > now:
        until = customer.throttled_until
        badges.append(
            Badge(
                "throttled",
                f"Throttled until {clock(until)}",
                f"Site24x7 asked us to wait until {exact_time(until)}",
                until,
            )
        )
    if customer.paused_until and customer.paused_until > now:
        until = customer.paused_until
        badges.append(
            Badge(
                "paused",
                f"Paused until {clock(until)}",
                f"Paused by the circuit breaker after {customer.consecutive_failures} "
                f"failures in a row: upstream failing",
                until,
            )
        )
    if customer.lease_until and customer.lease_until > now:
        badges.append(Badge("refreshing", "Refreshing…", "A refresh is running now"))
    return badges


def build_row(customer, groups: Iterable[tuple], *, now: datetime, url: str, freshness=None) -> Row:
    """One grid row from a customer and its group tuples (GROUP_FIELDS order)."""
    freshness = freshness or customer_freshness(customer, now)
    worst = as_status(customer.worst_status)
    display = Status.UNKNOWN if freshness.stale else worst
    stale = freshness.stale
    cells = [
        Cell(gid, name, as_status(status), monitors, errors, True, moment(since), stale)
        for _, gid, name, status, monitors, errors, since in groups
    ]
    cells.sort(key=lambda c: (c.status.severity, c.name.casefold()))
    return Row(
        pk=customer.pk,
        name=customer.name,
        url=url,
        shown=cells,
        worst=worst,
        display=display,
        freshness=freshness,
        fetched_at=customer.data_fetched_at or customer.last_success_at,
        last_success_at=customer.last_success_at,
        badges=customer_badges(customer, freshness, now),
        cells=cells,
        data_centre=customer.data_centre,
        oauth=customer.auth_generation == AuthGeneration.OAUTH,
        worst_since=customer.worst_status_since,
        token_id=getattr(customer, "token_id", None),
        token_last4=getattr(customer, "token_last4", "") or "",
    )


# --- filtering, sorting, the summary ---------------------------------------------------------


@dataclass
class StatusCount:
    status: Status
    slug: str
    label: str
    count: int
    querystring: str = ""
    selected: bool = False


@dataclass
class Summary:
    customers: list[StatusCount]
    groups: list[StatusCount]
    total: int
    problems: int
    stale: int
    total_groups: int

    def as_json(self) -> dict:
        def counts(items):
            return {item.slug: item.count for item in items}

        return {
            "customers": self.total,
            "problems": self.problems,
            "stale": self.stale,
            "groups": self.total_groups,
            "customers_by_status": counts(self.customers),
            "groups_by_status": counts(self.groups),
        }


def summarise(rows: Iterable[Row], filters: GridFilters) -> Summary:
    rows = list(rows)
    by_customer = Counter(row.display for row in rows)
    by_group: Counter = Counter()
    for row in rows:
        for cell in row.cells:
            by_group[Status.UNKNOWN if cell.stale else cell.status] += 1

    def counts(counter):
        return [
            StatusCount(
                status=s,
                slug=s.slug,
                label=status_label(s, customer_level=True),
                count=counter[s],
                querystring=filters.querystring(status=s.slug, problems=None),
                selected=s in filters.statuses,
            )
            for s in STATUS_SEVERITY
            if counter[s]
        ]

    return Summary(
        customers=counts(by_customer),
        groups=counts(by_group),
        total=len(rows),
        problems=sum(1 for row in rows if row.problem),
        stale=sum(1 for row in rows if row.stale),
        total_groups=sum(by_group.values()),
    )


def _search(row: Row, needle: str) -> Row | None:
    """The row if its name matches (all groups), a copy with only the matching groups if some
    groups match, None if nothing does. The row itself is never changed (it may be cached)."""
    if not needle or needle in row.name.casefold():
        return row
    matching = [cell for cell in row.cells if needle in cell.name.casefold()]
    if not matching:
        return None
    view = copy.copy(row)
    view.matched_groups = len(matching)
    view.cells = view.shown = matching
    return view


WALL_LINES = 3  # chip lines under a customer's name on a wall screen (2 when stale)


def _fold(row: Row, filters: GridFilters) -> Row:
    """Wall screens and "problems only" fold Up groups into one chip. A wall screen also
    keeps every customer to a fixed height: at most WALL_LINES chips, worst first, the last
    one summing up the rest ("+3 more · 5 up"). A copy when anything changes."""
    if not filters.collapse_up and not filters.wall:
        return row
    view = copy.copy(row)
    if filters.collapse_up and not row.stale:
        view.shown = [cell for cell in row.cells if cell.status is not Status.UP]
        view.folded = [cell for cell in row.cells if cell.status is Status.UP]
    else:
        view.shown, view.folded = row.cells, []
    if not filters.wall:
        return view
    slots = WALL_LINES - 1 if row.stale else WALL_LINES
    if len(view.shown) + (1 if view.folded else 0) > slots:
        view.more = len(view.shown) - (slots - 1)
        view.shown = view.shown[: slots - 1]
    return view


def _sort_key(sort: str) -> Callable[[Row], tuple]:
    if sort == "name":
        return lambda row: (row.name.casefold(), row.pk)
    if sort == "age":
        # Oldest data first; never-refreshed customers before everything else.
        return lambda row: (
            row.fetched_at is not None,
            row.fetched_at or datetime.min.replace(tzinfo=UTC),
            row.name.casefold(),
        )
    # Worst first; a quiet (acknowledged or muted) problem below the problems nobody took yet.
    return lambda row: (
        (1 if row.quiet else 0) if row.problem else 2,
        row.display.severity,
        row.name.casefold(),
        row.pk,
    )


def apply_filters(rows: list[Row], filters: GridFilters) -> list[Row]:
    """The rows to show, in order, as views (copies where a filter changes what they show)."""
    needle = filters.q.casefold()
    kept = []
    for row in rows:
        if not filters.matches_status(row.display):
            continue
        view = _search(row, needle)
        if view is not None:
            kept.append(_fold(view, filters))
    kept.sort(key=_sort_key(filters.sort))
    return kept


# --- the whole grid ----------------------------------------------------------------------------


@dataclass
class Grid:
    rows: list[Row]
    summary: Summary
    filters: GridFilters
    now: datetime
    entries: dict[int, _Entry] = field(default_factory=dict, repr=False)
    # Filled by portals.signals.grid_loaded receivers: notices above the rows ({"kind",
    # "text", "detail"}), and template names the page includes ("filters", "toolbar", "menu")
    # plus their data.
    banners: list[dict] = field(default_factory=list)
    extensions: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        n = self.summary.problems
        if not self.summary.total:
            return "No customers"
        if not n:
            return "All clear"
        return f"{n} problem{'s' if n != 1 else ''}"

    @cached_property
    def rendered_rows(self) -> list[tuple[str, str]]:
        """(markup, digest) of every shown row, each rendered once per content."""
        wall = self.filters.wall
        return [self.entries[view.pk].html(view, wall) for view in self.rows]

    @property
    def rows_html(self) -> str:
        """Every shown row's markup (its clock texts as markers, see fill_times)."""
        return mark_safe("".join(html for html, _ in self.rendered_rows))  # noqa: S308 - escaped

    @property
    def rows_digest(self) -> str:
        """What the rows show, in order, in a few bytes: "<customer id>:<markup digest>,…"."""
        pairs = zip(self.rows, self.rendered_rows, strict=True)
        return ",".join(f"{view.pk}:{digest}" for view, (_, digest) in pairs)

    def changed_rows_html(self, known: Mapping[str, str]) -> str:
        """The markup of the rows whose digest is not the one in `known` ({id: digest}, what
        a page shows): what a poll sends when it knows what the page has."""
        return "".join(
            html
            for view, (html, digest) in zip(self.rows, self.rendered_rows, strict=True)
            if known.get(str(view.pk)) != digest
        )

    @property
    def rows_order(self) -> str:
        return ",".join(str(view.pk) for view in self.rows)

    def as_json(self) -> dict:
        return {
            "generated_at": self.now.isoformat(),
            "refresh_interval": settings.REFRESH_INTERVAL,
            "stale_after_seconds": 2 * settings.REFRESH_INTERVAL,
            "filters": dict(self.filters.params()),
            "summary": self.summary.as_json(),
            "count": len(self.rows),
            "banners": self.banners,
            "customers": [row.as_json(self.now) for row in self.rows],
        }


def url_maker(name: str) -> Callable[[int], str] | None:
    """`pk -> url` for a URL that takes one integer, reversed once (not once per row), or
    None when that URL does not exist (yet)."""
    marker = 987654321
    try:
        sample = reverse(name, args=[marker])
    except NoReverseMatch:
        return None
    head, _, tail = sample.partition(str(marker))
    return lambda pk: f"{head}{pk}{tail}"


def build_grid(
    *, filters: GridFilters, base=None, now: datetime | None = None, annotate=None
) -> Grid:
    """The grid for the customers of `base` (what the user may see): two queries; rows are
    built (and later rendered) only when their content is not in the row cache."""
    now = now or timezone.now()
    customer_url = url_maker("portals:customer")
    context = render_context(customer_url("{pk}"))
    groups = grid_groups(base=base)
    entries = {
        customer.pk: cached_entry(
            customer, groups.get(customer.pk, ()), now, context, customer_url, annotate
        )
        for customer in grid_customers(base=base)
    }
    rows = [entry.row for entry in entries.values()]
    summary = summarise(rows, filters)
    return Grid(apply_filters(rows, filters), summary, filters, now, entries)


# --- the row cache: content-addressed, so never older than the database -------------------------


def render_context(customer_url: str) -> tuple:
    """What shapes a row's text besides its data: the staleness threshold (the reason says
    "older than 10 min"), the time zone of the times shown, the customer page's URL."""
    return (settings.REFRESH_INTERVAL, str(timezone.get_current_timezone()), customer_url)


def clock_state(customer: GridCustomer, stale: bool, now: datetime) -> tuple[bool, ...]:
    """Everything about a row that changes with the clock alone, apart from the time texts:
    stale, throttled, paused by the breaker, being refreshed (compared as customer_badges
    compares them)."""
    return (
        stale,
        customer.throttled_until_ts is not None and customer.throttled_until > now,
        customer.paused_until_ts is not None and customer.paused_until > now,
        customer.lease_until_ts is not None and customer.lease_until > now,
    )


class _Entry:
    """A built row and its markup per view (wall screen, folded, searched), made on demand."""

    __slots__ = ("row", "views")
    MAX_VIEWS = 8

    def __init__(self, row: Row) -> None:
        self.row = row
        self.views: dict[tuple, tuple[str, str]] = {}

    def html(self, view: Row, wall: bool) -> tuple[str, str]:
        """(markup, digest) of this view of the row."""
        key = (
            wall,
            tuple(cell.group_id for cell in view.shown),
            tuple(cell.group_id for cell in view.folded),
            view.more,
            view.matched_groups,
        )
        rendered = self.views.get(key)
        if rendered is None:
            if len(self.views) >= self.MAX_VIEWS:
                self.views = {}
            rendered = self.views[key] = row_html(view, wall=wall)
        return rendered


class RowCache:
    """Rows by content, in two generations (the older one dropped when the newer fills up):
    bounded, lock-free (each operation is one dict access), one per process. A key holds the
    customer's and its groups' values as read by this request, so a hit is exact."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.current: dict[tuple, _Entry] = {}
        self.previous: dict[tuple, _Entry] = {}
        self.hits = self.misses = 0

    def get(self, key: tuple) -> _Entry | None:
        entry = self.current.get(key)
        if entry is None:
            entry = self.previous.get(key)
            if entry is not None:
                self.put(key, entry)
        return entry

    def put(self, key: tuple, entry: _Entry) -> None:
        if len(self.current) >= self.size:
            self.previous, self.current = self.current, {}
        self.current[key] = entry

    def clear(self) -> None:
        self.current, self.previous = {}, {}

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)


ROW_CACHE = RowCache(settings.GRID_ROW_CACHE_SIZE)


def forget_rendered_rows() -> None:
    """Empty this process's row cache (benchmarks measure the cold path with it)."""
    ROW_CACHE.clear()


@dataclass(frozen=True)
class Annotation:
    """What another app adds to one customer's row (portals.signals.grid_annotator): badges
    as (kind, label, detail), CSS classes, and `quiet` (a problem someone took care of, sorted
    below the others). Part of the row cache's key, so a cached row is never annotated wrong."""

    badges: tuple[tuple[str, str, str], ...] = ()
    css: str = ""
    quiet: bool = False


def cached_entry(
    customer: GridCustomer, groups, now: datetime, context: tuple, url, annotate=None
) -> _Entry:
    freshness = customer_freshness(customer, now)
    groups = tuple(groups)
    note = annotate(customer, groups, freshness) if annotate else None
    key = (customer, groups, clock_state(customer, freshness.stale, now), context, note)
    entry = ROW_CACHE.get(key)
    if entry is None:
        ROW_CACHE.misses += 1
        row = build_row(customer, groups, now=now, url=url(customer.pk), freshness=freshness)
        if note:
            row.badges += [Badge(kind, label, detail) for kind, label, detail in note.badges]
            row.css, row.quiet = note.css, note.quiet
        entry = _Entry(row)
        ROW_CACHE.put(key, entry)
    else:
        ROW_CACHE.hits += 1
    return entry


# --- the markup of a row: the hot path of a cold poll ---------------------------------------------
# Ten groups for each of 1,000 customers are 10,000 cells; a template tag per value would cost
# more than everything else together, so each row and each cell is one escaped f-string. The
# markup is what portals/_grid_live.html showed before, plus `data-v`: a digest of the row's
# markup, so that the page replaces only the rows that changed (static/js/app.js).


def _e(value) -> str:
    """Escaped for HTML text and attributes; NUL (the time markers' delimiter) dropped."""
    return escape(str(value)).replace("\x00", "")


def row_html(row: Row, *, wall: bool) -> tuple[str, str]:
    """The row's markup and its digest (also in the markup, as data-v)."""
    tz = timezone.get_current_timezone()
    problem = " is-problem" if row.problem else ""
    stale = " is-stale" if row.stale else ""
    token = (
        f' data-token="{row.token_id}" data-masked="{_e(row.token_masked)}"' if row.token_id else ""
    )
    oauth = " data-oauth" if row.oauth else ""
    css = f" {_e(row.css)}" if row.css else ""
    start = (
        f'<article class="row s-{row.slug}{problem}{stale}{css}" id="c-{row.pk}" '
        f'data-customer="{row.pk}" data-status="{row.slug}"{token}{oauth}'
    )
    rest = (
        f'>{_row_head(row, wall=wall)}<ul class="cells">{cells_html(row, wall=wall, tz=tz)}'
        f"{_row_tail(row)}</ul></article>"
    )
    start, rest = _narrow(start), _narrow(rest)
    digest = hashlib.blake2b(f"{start}{rest}".encode(), digest_size=8).hexdigest()
    return f'{start} data-v="{digest}"{rest}', digest


def _narrow(markup: str) -> str:
    """Characters beyond Latin-1 ("••••", "…", most names' letters outside Western Europe) as
    character references: a cached row then takes one byte a character instead of two, and so
    does every response joined from rows (Python stores a string in its widest character)."""
    if markup.isascii():
        return markup
    return markup.encode("latin-1", "xmlcharrefreplace").decode("latin-1")


def _row_head(row: Row, *, wall: bool) -> str:
    since = ""
    if row.since_text:
        since = (
            f'<time class="since" datetime="{row.worst_since.isoformat()}">{row.since_text}</time>'
        )
    badges = "".join(
        f'<span class="badge b-{badge.kind}" title="{_e(badge.detail)}">{_e(badge.label)}</span>'
        for badge in row.badges
        if badge.kind != "stale"
    )
    note = f'<p class="stale-note">{_e(row.stale_note)}</p>' if row.stale else ""
    menu = (
        ""
        if wall
        else '<details class="menu"><summary title="Actions" '
        f'aria-label="Actions for {_e(row.name)}"><svg class="i" aria-hidden="true">'
        '<use href="#i-menu"></use></svg></summary><div class="menu-items"></div></details>'
    )
    return (
        f'<div class="row-head"><a class="row-name" id="c-{row.pk}-a" href="{_e(row.url)}">'
        f'{_e(row.name)}</a><div class="row-meta"><span class="pill s-{row.slug}">'
        f'<svg class="i" aria-hidden="true"><use href="#i-{row.slug}"></use></svg>{row.label}'
        f'</span>{since}<time class="age" datetime="{row.fetched_iso}" '
        f'title="Data fetched {_e(row.fetched_exact)}">{row.age_text}</time>{badges}</div>'
        f"{note}{menu}</div>"
    )


def _row_tail(row: Row) -> str:
    """The chips after the groups: "+3 more", the folded Up groups, or why there are none."""
    folded, n = row.folded, len(row.folded)
    tail = ""
    if row.more:
        plural = "s" if row.more != 1 else ""
        up = f"; up: {_e(row.folded_title)}" if folded else ""
        tail = (
            f'<li class="cell cell-more"><a href="{_e(row.url)}" tabindex="-1" '
            f'title="{row.more} more group{plural} not up{up}">+{row.more} more'
            f"{f' · {n} up' if folded else ''}</a></li>"
        )
    elif folded:
        tail = (
            f'<li class="cell cell-folded s-up i-up" title="Up: {_e(row.folded_title)}">'
            f'<span class="cn">{n} group{"s" if n != 1 else ""}</span>'
            '<span class="cs">Up</span></li>'
        )
    if not row.cells:
        why = "No monitor groups yet" if row.matched_groups is None else "No matching groups"
        tail += f'<li class="cell cell-empty">{why}</li>'
    return tail


def cells_html(row: Row, *, wall: bool, tz) -> str:
    """`<li class="cell s-down i-down" data-g="<group id>" title="…">` per shown group; the icon
    is a CSS mask picked by `i-<status>`, a click opens the group on the customer page."""
    parts = []
    for cell in row.shown:
        count = f"{cell.error_monitors}/{cell.monitors}" if wall else cell.count_text
        parts.append(
            f'<li class="cell s-{cell.slug} i-{cell.icon}" data-g="{_e(cell.group_id)}" '
            f'title="{_e(cell.grid_tooltip(tz))}"><span class="cn">{_e(cell.name)}</span>'
            f'<span class="cs">{cell.label}</span><span class="cc">{count}</span></li>'
        )
    return "".join(parts)


# --- time texts: markers in cached markup, text in each response ---------------------------------

_MARKER = re.compile("\x00([asn])(-?[0-9.]*)\x00")


def time_marker(kind: str, moment: datetime | None = None) -> str:
    """A placeholder for a text that depends on the clock: "a" "2 min ago" (since `moment`),
    "s" "for 2 h", "n" the response's time (ISO)."""
    return f"\x00{kind}{moment.timestamp() if moment else ''}\x00"


def fill_times(html: str, now: datetime) -> str:
    """The markup with every time marker replaced by its text at `now`."""
    if "\x00" not in html:
        return html
    epoch = now.timestamp()
    iso = now.isoformat()

    def text(match: re.Match) -> str:
        kind, value = match.group(1), match.group(2)
        if kind == "n":
            return iso
        span = timedelta(seconds=epoch - float(value))
        return age_text(span) if kind == "a" else f"for {span_text(span)}"

    return _MARKER.sub(text, html)
