"""The read side of the grid: one customer query plus one group query, shaped in Python.

PERF-01: the number of SQL queries does not depend on the number of customers or groups. The
customer query carries the credential state as correlated subqueries (no query per row), the
OAuth identity comes through a join, the top groups come in one query as plain tuples.
Filtering, sorting and the summary happen in Python on those rows: the summary counts every
active customer, whatever the filters, so it works as a filter bar. No upstream call here."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import OuterRef, Subquery
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


# --- filters, kept in the URL -----------------------------------------------------------------


@dataclass(frozen=True)
class GridFilters:
    statuses: frozenset[Status] = frozenset()
    q: str = ""
    problems: bool = False
    sort: str = "status"
    wall: bool = False

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


GROUP_FIELDS = (
    "customer_id", "group_id", "name", "status", "monitors", "error_monitors", "top_group",
    "status_since",
)  # fmt: skip


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
        .select_related("msp_credential")
        .defer(
            "lease_token",
            "msp_credential__secret_ciphertext",
            "msp_credential__client_secret_ciphertext",
        )
        .annotate(
            token_id=Subquery(newest_active.values("pk")[:1]),
            token_last4=Subquery(newest_active.values("secret_last4")[:1]),
        )
        .order_by()
    )
    return with_credential_state(customers)


def grid_groups(*, base=None, top_only: bool = True) -> dict[int, list[tuple]]:
    """{customer id: [group tuples in GROUP_FIELDS order]} for the active customers of `base`:
    one query, plain tuples (thousands of model instances would cost more than the query)."""
    base = Customer.objects.all() if base is None else base
    groups = MonitorGroup.objects.filter(customer__in=base.filter(is_active=True).values("pk"))
    if top_only:
        groups = groups.filter(top_group=True)
    by_customer: dict[int, list[tuple]] = defaultdict(list)
    for group in groups.order_by().values_list(*GROUP_FIELDS):
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


@dataclass
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
    cells_html: str = ""  # the markup of `shown`, made once per request (see cells_html)
    worst_since: datetime | None = None
    matched_groups: int | None = None  # set when only some groups matched a search

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
        return age_text(self.freshness.age)

    @property
    def fetched_iso(self) -> str:
        return self.fetched_at.isoformat() if self.fetched_at else ""

    @property
    def fetched_exact(self) -> str:
        return exact_time(self.fetched_at) if self.fetched_at else "never refreshed"

    @property
    def since_text(self) -> str:
        """How long the (fresh) worst status has held, for problems: "for 2 h"."""
        if self.stale or not self.problem or not self.worst_since:
            return ""
        return f"for {span_text(timezone.now() - self.worst_since)}"

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

    def as_json(self) -> dict:
        age = self.freshness.age
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


def build_row(customer, groups: list[tuple], *, now: datetime, url: str) -> Row:
    """One grid row from a customer and its group tuples (GROUP_FIELDS order)."""
    freshness = customer_freshness(customer, now)
    worst = as_status(customer.worst_status)
    display = Status.UNKNOWN if freshness.stale else worst
    stale = freshness.stale
    cells = [
        Cell(gid, name, as_status(status), monitors, errors, top, since, stale)
        for _, gid, name, status, monitors, errors, top, since in groups
    ]
    cells.sort(key=lambda c: (c.status.severity, c.name.casefold()))
    return Row(
        pk=customer.pk,
        name=customer.name,
        url=url,
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


def _search(row: Row, needle: str) -> bool:
    """Keep the row if its name matches (all groups) or some groups match (only those)."""
    if not needle:
        return True
    if needle in row.name.casefold():
        return True
    matching = [cell for cell in row.cells if needle in cell.name.casefold()]
    if not matching:
        return False
    row.matched_groups = len(matching)
    row.cells = matching
    return True


WALL_LINES = 3  # chip lines under a customer's name on a wall screen (2 when stale)


def _fold(row: Row, filters: GridFilters) -> None:
    """Wall screens and "problems only" fold Up groups into one chip. A wall screen also
    keeps every customer to a fixed height: at most WALL_LINES chips, worst first, the last
    one summing up the rest ("+3 more · 5 up")."""
    if filters.collapse_up and not row.stale:
        row.shown = [cell for cell in row.cells if cell.status is not Status.UP]
        row.folded = [cell for cell in row.cells if cell.status is Status.UP]
    else:
        row.shown, row.folded = row.cells, []
    if not filters.wall:
        return
    slots = WALL_LINES - 1 if row.stale else WALL_LINES
    if len(row.shown) + (1 if row.folded else 0) > slots:
        row.more = len(row.shown) - (slots - 1)
        row.shown = row.shown[: slots - 1]


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
    return lambda row: (row.display.severity, row.name.casefold(), row.pk)


def apply_filters(rows: list[Row], filters: GridFilters) -> list[Row]:
    needle = filters.q.casefold()
    kept = [row for row in rows if filters.matches_status(row.display) and _search(row, needle)]
    for row in kept:
        _fold(row, filters)
    kept.sort(key=_sort_key(filters.sort))
    return kept


# --- the whole grid ----------------------------------------------------------------------------


@dataclass
class Grid:
    rows: list[Row]
    summary: Summary
    filters: GridFilters
    now: datetime

    @property
    def title(self) -> str:
        n = self.summary.problems
        if not self.summary.total:
            return "No customers"
        if not n:
            return "All clear"
        return f"{n} problem{'s' if n != 1 else ''}"

    def as_json(self) -> dict:
        return {
            "generated_at": self.now.isoformat(),
            "refresh_interval": settings.REFRESH_INTERVAL,
            "stale_after_seconds": 2 * settings.REFRESH_INTERVAL,
            "filters": dict(self.filters.params()),
            "summary": self.summary.as_json(),
            "count": len(self.rows),
            "customers": [row.as_json() for row in self.rows],
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


def build_grid(*, filters: GridFilters, base=None, now: datetime | None = None) -> Grid:
    """The grid for the customers of `base` (what the user may see): two queries."""
    now = now or timezone.now()
    customer_url = url_maker("portals:customer")
    groups = grid_groups(base=base)
    rows = [
        build_row(c, groups.get(c.pk, []), now=now, url=customer_url(c.pk))
        for c in grid_queryset(base=base)
    ]
    summary = summarise(rows, filters)
    rows = apply_filters(rows, filters)
    for row in rows:
        row.cells_html = cells_html(row, wall=filters.wall, now=now)
    return Grid(rows=rows, summary=summary, filters=filters, now=now)


# --- the cells' markup: the hot path of every poll ---------------------------------------------
# Ten groups for each of 1,000 customers are 10,000 cells every few seconds; a template tag per
# value would cost more than everything else together, so each cell is one escaped f-string.


def cells_html(row: Row, *, wall: bool, now: datetime) -> str:
    """`<li class="cell s-down i-down" data-g="<group id>" title="…">` per shown group; the icon
    is a CSS mask picked by `i-<status>`, a click opens the group on the customer page."""
    parts = []
    for cell in row.shown:
        count = f"{cell.error_monitors}/{cell.monitors}" if wall else cell.count_text
        parts.append(
            f'<li class="cell s-{cell.slug} i-{cell.icon}" data-g="{escape(cell.group_id)}" '
            f'title="{escape(cell.tooltip(now))}"><span class="cn">{escape(cell.name)}</span>'
            f'<span class="cs">{cell.label}</span><span class="cc">{count}</span></li>'
        )
    return mark_safe("".join(parts))  # noqa: S308 - every value above is escaped or ours
