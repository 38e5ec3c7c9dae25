"""CSV exports: the grid as filtered, and the availability report for a period.

Cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage
return) are prefixed with a single quote (OWASP's CSV injection advice); customer and group
names come from Site24x7 and are not ours to trust."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from django.utils import timezone

from portals.queries import Grid

from . import availability
from .models import SilenceKind
from .overlay import grid_availability, overlay_load

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def _write(header: list[str], rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe(value) for value in row])
    return buffer.getvalue()


GRID_COLUMNS = [
    "customer",
    "customer_id",
    "data_centre",
    "status",
    "problem",
    "stale",
    "stale_reason",
    "last_known_status",
    "status_since",
    "data_age_seconds",
    "data_fetched_at",
    "problem_groups",
    "groups",
    "groups_not_up",
    "acknowledged_by",
    "acknowledged_at",
    "ack_note",
    "ack_expires_at",
    "muted_until",
    "mute_note",
    "flapping",
]


def grid_csv(grid: Grid, *, user, period_key: str = "") -> str:
    """One line per customer of the grid as shown (its filters and sort)."""
    now = grid.now
    overlay = overlay_load()
    header = list(GRID_COLUMNS)
    avail = {}
    if period_key:
        avail = grid_availability(user, period_key, now)
        header += [
            f"availability_{period_key}_percent",
            f"downtime_{period_key}_minutes",
            f"outages_{period_key}",
        ]
    lines = []
    for row in grid.rows:
        silences = [s for s in overlay.silences.get(row.pk, ()) if s.active(now)]
        ack = next((s for s in silences if s.kind == SilenceKind.ACK and not s.group_id), None)
        mute = next((s for s in silences if s.kind == SilenceKind.MUTE), None)
        flapping = any(f.flapping(now) for f in overlay.flaps.get(row.pk, ()))
        problems = [f"{c.name} ({c.status.label})" for c in row.cells if c.problem]
        age = row.freshness.age
        line = [
            row.name,
            row.pk,
            row.data_centre,
            row.label,
            int(row.problem),
            int(row.stale),
            row.freshness.reason,
            row.worst.label,
            _iso(row.worst_since),
            int(age.total_seconds()) if age is not None else "",
            row.fetched_iso,
            "; ".join(problems),
            len(row.cells),
            sum(1 for c in row.cells if c.problem),
            ack.by if ack else "",
            _iso(ack.at) if ack else "",
            ack.note if ack else "",
            _iso(ack.expires_at) if ack else "",
            _iso(mute.expires_at) if mute else "",
            mute.note if mute else "",
            int(flapping),
        ]
        if period_key:
            result = avail.get(row.pk)
            percent = result.percent if result else None
            line += [
                "" if percent is None else f"{percent:.3f}",
                result.downtime_minutes if result else "",
                result.outages if result else "",
            ]
        lines.append(line)
    return _write(header, lines)


AVAILABILITY_COLUMNS = [
    "customer",
    "group",
    "availability_percent",
    "downtime_minutes",
    "outages",
    "longest_outage_minutes",
    "degraded_minutes",
    "maintenance_minutes",
    "no_data_minutes",
    "monitored_minutes",
    "data_centre",
    "customer_id",
    "group_id",
    "period_start",
    "period_end",
]


def availability_csv(rows: list[availability.ReportRow], period: availability.Period) -> str:
    """The monthly customer report: one line per customer (group empty: its worst status)
    and, below it, one per monitor group."""
    minutes = availability.Availability.minutes
    lines = []
    for row in rows:
        a = row.availability
        percent = a.percent
        lines.append(
            [
                row.customer,
                row.group,
                "" if percent is None else f"{percent:.3f}",
                a.downtime_minutes,
                a.outages,
                a.longest_outage_minutes,
                minutes(a.degraded),
                minutes(a.left_out),
                minutes(a.unknown),
                minutes(a.counted),
                row.data_centre,
                row.customer_id,
                row.group_id,
                period.start.isoformat(),
                period.end.isoformat(),
            ]
        )
    return _write(AVAILABILITY_COLUMNS, lines)


def filename(stem: str, when: datetime | None = None) -> str:
    when = timezone.localtime(when or timezone.now())
    return f"{stem}-{when:%Y%m%d-%H%M}.csv"
