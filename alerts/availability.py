"""Availability from the status history (portals.StatusChange), per customer and per group.

Rules (documented for the monthly report an MSP sends):

- Available: the statuses of AVAILABILITY_UP_STATUSES (default: Up only, as Site24x7 defines
  availability: "the percentage of time the monitor is UP outside of the maintenance period").
- Downtime: Down and Critical. A run of downtime is one outage; an unknown stretch inside a
  run does not split it (it is not counted as downtime either); an outage that began before
  the period counts, clipped to the period.
- Degraded: every other monitored status (Trouble, Configuration Error unless listed as
  available): in the denominator, neither available nor downtime.
- Left out of the denominator: Maintenance (like Site24x7), Suspended and Discovery (not
  being monitored), and unknown time: before the first observation, Site24x7's own Unknown,
  and gaps without fresh data (alerts.DataGap, plus the gap still open: data older than twice
  the refresh interval). Availability = available / (available + downtime + degraded).
- The status at the start of the period is the last change before it; none: unknown."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from msp_dashboard.site24x7 import Status
from portals.models import MonitorGroup, StatusChange
from portals.status import stale_after

from .models import DataGap

DOWNTIME = frozenset({Status.DOWN, Status.CRITICAL})
LEFT_OUT = frozenset({Status.MAINTENANCE, Status.SUSPENDED, Status.DISCOVERY})
PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
PERIOD_LABELS = {"24h": "24 h", "7d": "7 days", "30d": "30 days"}
_BY_SLUG = {s.slug: s for s in Status}


def available_statuses() -> frozenset[Status]:
    chosen = {_BY_SLUG[v.strip().lower()] for v in settings.AVAILABILITY_UP_STATUSES}
    return frozenset(chosen - DOWNTIME) or frozenset({Status.UP})


@dataclass
class Availability:
    start: datetime
    end: datetime
    up: float = 0.0  # seconds
    down: float = 0.0
    degraded: float = 0.0
    left_out: float = 0.0  # maintenance, suspended, discovery
    unknown: float = 0.0
    outages: int = 0
    longest_outage: float = 0.0

    @property
    def counted(self) -> float:
        return self.up + self.down + self.degraded

    @property
    def percent(self) -> float | None:
        """None when nothing in the period was observed (no data is not 100 %)."""
        return self.up / self.counted * 100 if self.counted > 0 else None

    @property
    def percent_text(self) -> str:
        value = self.percent
        if value is None:
            return "no data"
        if value < 100 and round(value, 2) == 100:
            return "99.99 %"  # never round a real outage away
        return f"{value:.2f} %"

    @staticmethod
    def minutes(seconds: float) -> float:
        return round(seconds / 60, 1)

    @property
    def downtime_minutes(self) -> float:
        return self.minutes(self.down)

    @property
    def longest_outage_minutes(self) -> float:
        return self.minutes(self.longest_outage)

    @property
    def down_text(self) -> str:
        return _minutes_text(self.down)

    @property
    def longest_text(self) -> str:
        return _minutes_text(self.longest_outage)

    @property
    def left_out_text(self) -> str:
        return _minutes_text(self.left_out)

    @property
    def unknown_text(self) -> str:
        return _minutes_text(self.unknown)

    @property
    def slug(self) -> str:
        """A colour for the number: up (≥ 99.9), trouble (≥ 99), down, or unknown."""
        value = self.percent
        if value is None:
            return "unknown"
        return "up" if value >= 99.9 else "trouble" if value >= 99 else "down"

    @property
    def summary(self) -> str:
        if self.percent is None:
            return "No data in this period"
        parts = [f"{self.percent_text} available"]
        if self.outages:
            s = "s" if self.outages != 1 else ""
            longest = _span(self.longest_outage)
            parts.append(f"{self.outages} outage{s}, {_span(self.down)} down, longest {longest}")
        if self.degraded:
            parts.append(f"{_span(self.degraded)} degraded")
        if self.left_out:
            parts.append(f"{_span(self.left_out)} maintenance/suspended left out")
        if self.unknown:
            parts.append(f"{_span(self.unknown)} without data left out")
        return "; ".join(parts)


def _minutes_text(seconds: float) -> str:
    """ "—" for none, "0.5 min", "12 min", "1,440 min"."""
    if seconds <= 0:
        return "—"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 10 else f"{round(minutes):,} min"


def _span(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _merge(
    gaps: Iterable[tuple[datetime, datetime]], start, end
) -> list[tuple[datetime, datetime]]:
    merged: list[list[datetime]] = []
    for a, b in sorted((max(a, start), min(b, end)) for a, b in gaps):
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def compute(
    *,
    initial: int | None,
    changes: Iterable[tuple[datetime, int]],
    gaps: Iterable[tuple[datetime, datetime]] = (),
    start: datetime,
    end: datetime,
    available: frozenset[Status] | None = None,
) -> Availability:
    """Availability of one subject over [start, end): `initial` is its status at `start`
    (None: unknown), `changes` (time, new status) its changes, `gaps` stretches without data."""
    available = available if available is not None else available_statuses()
    result = Availability(start, end)
    points = [(start, initial)] + sorted((at, s) for at, s in changes if start < at < end)
    holes = _merge(gaps, start, end)
    cuts = sorted({start, end, *(at for at, _ in points), *(t for gap in holes for t in gap)})
    status_index, hole_index, outage, run = 0, 0, False, 0.0
    for a, b in zip(cuts, cuts[1:], strict=False):
        while status_index + 1 < len(points) and points[status_index + 1][0] <= a:
            status_index += 1
        while hole_index < len(holes) and holes[hole_index][1] <= a:
            hole_index += 1
        in_hole = hole_index < len(holes) and holes[hole_index][0] <= a
        seconds = (b - a).total_seconds()
        code = points[status_index][1]
        status = None if in_hole or code is None else _status(code)
        if status is None or status is Status.UNKNOWN:
            result.unknown += seconds  # an outage runs on through a stretch without data
            continue
        if status in DOWNTIME:
            result.down += seconds
            if not outage:
                result.outages, outage, run = result.outages + 1, True, 0.0
            run += seconds
            result.longest_outage = max(result.longest_outage, run)
            continue
        outage = False
        if status in available:
            result.up += seconds
        elif status in LEFT_OUT:
            result.left_out += seconds
        else:
            result.degraded += seconds
    return result


def _status(code: int) -> Status:
    try:
        return Status(code)
    except ValueError:
        return Status.UNKNOWN


# --- periods -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    key: str  # 24h | 7d | 30d | month:YYYY-MM | range:YYYY-MM-DD:YYYY-MM-DD
    label: str
    start: datetime
    end: datetime


MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def period_from(params, *, now: datetime | None = None, default: str = "30d") -> Period:
    """`period=24h|7d|30d` (wins when given), else `month=YYYY-MM` (a calendar month in the
    dashboard's time zone, up to now), else `start=YYYY-MM-DD&end=YYYY-MM-DD` (end day
    included), else the default."""
    now = now or timezone.now()
    rolling = str(params.get("period") or "")
    if rolling in PERIODS:
        return Period(rolling, f"last {PERIOD_LABELS[rolling]}", now - PERIODS[rolling], now)
    month = str(params.get("month") or "").strip()
    if match := MONTH.match(month):
        year, number = int(match[1]), int(match[2])
        if 1 <= number <= 12 and 2000 <= year <= 2100:
            first = _local_midnight(date(year, number, 1))
            following = date(year + number // 12, number % 12 + 1, 1)
            end = min(_local_midnight(following), now)
            return Period(f"month:{month}", first.strftime("%B %Y"), first, max(first, end))
    start_day, end_day = _day(params.get("start")), _day(params.get("end"))
    if start_day and end_day and start_day <= end_day:
        start = _local_midnight(start_day)
        end = min(_local_midnight(end_day + timedelta(days=1)), now)
        label = f"{start_day:%Y-%m-%d} – {end_day:%Y-%m-%d}"
        return Period(f"range:{start_day}:{end_day}", label, start, max(start, end))
    return Period(default, f"last {PERIOD_LABELS[default]}", now - PERIODS[default], now)


def _day(value) -> date | None:
    try:
        return date.fromisoformat(str(value or "").strip())
    except ValueError:
        return None


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


# --- reading the history -------------------------------------------------------------------------


@dataclass
class SubjectHistory:
    customer_id: int
    group_id: str
    group_name: str = ""
    initial: int | None = None
    changes: list[tuple[datetime, int]] = field(default_factory=list)


def histories(
    customer_ids: list[int], start: datetime, end: datetime, *, groups: bool
) -> dict[tuple[int, str], SubjectHistory]:
    """{(customer id, group id): history} for the customers' worst status ("") and, with
    `groups`, every group that has history: two queries, whatever the number of subjects."""
    base = StatusChange.objects.filter(customer_id__in=customer_ids)
    if not groups:
        base = base.filter(group_id="")
    found: dict[tuple[int, str], SubjectHistory] = {}

    def subject(customer_id, group_id, name) -> SubjectHistory:
        key = (customer_id, group_id)
        if key not in found:
            found[key] = SubjectHistory(customer_id, group_id, name)
        elif name:
            found[key].group_name = name
        return found[key]

    before = (
        base.filter(at__lt=start)
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("customer_id"), F("group_id")],
                order_by=[F("at").desc(), F("id").desc()],
            )
        )
        .filter(rank=1)
        .values_list("customer_id", "group_id", "group_name", "to_status")
    )
    for customer_id, group_id, name, status in before:
        subject(customer_id, group_id, name).initial = status
    during = (
        base.filter(at__gte=start, at__lt=end)
        .order_by("at", "id")
        .values_list("customer_id", "group_id", "group_name", "to_status", "at")
    )
    for customer_id, group_id, name, status, at in during:
        subject(customer_id, group_id, name).changes.append((at, status))
    return found


def gaps_for(customers, start: datetime, end: datetime, now: datetime) -> dict[int, list]:
    """{customer id: [(start, end)]}: recorded gaps and the one still open (one query)."""
    ids = [c.pk for c in customers]
    found: dict[int, list] = defaultdict(list)
    rows = DataGap.objects.filter(customer_id__in=ids, end__gt=start, start__lt=end)
    for customer_id, a, b in rows.values_list("customer_id", "start", "end"):
        found[customer_id].append((a, b))
    limit = stale_after()
    for customer in customers:
        fetched = customer.data_fetched_at or customer.last_success_at
        if fetched is not None and now - fetched > limit:
            found[customer.pk].append((fetched + limit, now))
    return found


@dataclass
class ReportRow:
    customer_id: int
    customer: str
    data_centre: str
    group_id: str
    group: str
    availability: Availability


def report(customers, period: Period, *, groups: bool = True, now=None) -> list[ReportRow]:
    """The availability report: per customer its worst status (group "") and, with `groups`,
    each monitor group, current or with history in the period. Four queries."""
    return reports(customers, [period], groups=groups, now=now)[period.key]


def reports(customers, periods: list[Period], *, groups: bool = True, now=None) -> dict:
    """{period key: report rows} for several periods from one read of the history (the
    customer page shows 24 h, 7 days and 30 days)."""
    now = now or timezone.now()
    customers = sorted(customers, key=lambda c: (c.name.casefold(), c.pk))
    ids = [c.pk for c in customers]
    earliest, latest = min(p.start for p in periods), max(p.end for p in periods)
    found = histories(ids, earliest, latest, groups=groups)
    gaps = gaps_for(customers, earliest, latest, now)
    current: dict[int, dict[str, str]] = defaultdict(dict)
    if groups:
        rows = MonitorGroup.objects.filter(customer_id__in=ids).order_by("name")
        for customer_id, group_id, name in rows.values_list("customer_id", "group_id", "name"):
            current[customer_id][group_id] = name
    available = available_statuses()
    out: dict[str, list[ReportRow]] = {p.key: [] for p in periods}
    for customer in customers:
        names = dict(current[customer.pk])
        for (cid, gid), history in found.items():
            if cid == customer.pk and gid and gid not in names:
                names[gid] = history.group_name
        keys = [""] + sorted(names, key=lambda gid: (names[gid].casefold(), gid))
        for gid in keys:
            history = found.get((customer.pk, gid)) or SubjectHistory(customer.pk, gid)
            for period in periods:
                initial, changes = _within(history, period)
                result = compute(
                    initial=initial,
                    changes=changes,
                    gaps=gaps.get(customer.pk, ()),
                    start=period.start,
                    end=period.end,
                    available=available,
                )
                out[period.key].append(
                    ReportRow(
                        customer.pk,
                        customer.name,
                        customer.data_centre,
                        gid,
                        names.get(gid, ""),
                        result,
                    )
                )
    return out


def _within(history: SubjectHistory, period: Period):
    """The status at the period's start and the changes inside it, from a longer history."""
    initial = history.initial
    changes = []
    for at, status in history.changes:
        if at < period.start:
            initial = status
        elif at < period.end:
            changes.append((at, status))
    return initial, changes


def customer_summary(customers, period: Period, now=None) -> dict[int, Availability]:
    """{customer id: availability of its worst status} (three queries)."""
    return {
        row.customer_id: row.availability
        for row in report(customers, period, groups=False, now=now)
    }
