"""Availability from the status history: the arithmetic on a crafted history (the state
before the window, downtime and outages, maintenance left out, gaps without data), periods,
the customer page's panel, and the CSV exports (availability report and the grid)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from alerts.availability import Period, compute, period_from, report
from alerts.exports import AVAILABILITY_COLUMNS, GRID_COLUMNS
from alerts.models import DataGap
from msp_dashboard.site24x7 import Status
from portals.models import StatusChange
from tests.grid_support import make_customer

pytestmark = pytest.mark.usefixtures("own_cache")
pytest_plugins = ["tests.alerts_support"]

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.get_fixed_timezone(0))
H = timedelta(hours=1)
UP, DOWN, CRIT, MAINT, TROUBLE = (
    Status.UP,
    Status.DOWN,
    Status.CRITICAL,
    Status.MAINTENANCE,
    Status.TROUBLE,
)

# The crafted day (hours before NOW): Down since before the window, Up, Down then Critical
# (one outage of an hour), Up, maintenance, Up, Trouble, Up, an hour without data, Up.
HISTORY = [
    (30, DOWN),
    (23, UP),
    (20, DOWN),
    (19.5, CRIT),
    (19, UP),
    (10, MAINT),
    (8, UP),
    (5, TROUBLE),
    (4, UP),
]
GAP = (NOW - 3 * H, NOW - 2 * H)


def _changes(start: datetime):
    points = [(NOW - hours * H, status) for hours, status in HISTORY]
    initial = [s for at, s in points if at < start][-1]
    return initial, [(at, s) for at, s in points if at >= start]


def test_availability_of_a_crafted_day():
    start = NOW - 24 * H
    initial, changes = _changes(start)
    result = compute(
        initial=initial,
        changes=changes,
        gaps=[GAP],
        start=start,
        end=NOW,
        available=frozenset({UP}),
    )
    minutes = {
        k: getattr(result, k) / 60 for k in ("up", "down", "degraded", "left_out", "unknown")
    }
    assert minutes == {"up": 1080, "down": 120, "degraded": 60, "left_out": 120, "unknown": 60}
    assert result.outages == 2  # the one running at the window's start counts, clipped
    assert result.longest_outage_minutes == 60.0 and result.downtime_minutes == 120.0
    assert result.percent == pytest.approx(1080 / 1260 * 100)
    assert result.percent_text == "85.71 %"
    # Trouble counted as available when the MSP says so (AVAILABILITY_UP_STATUSES=up,trouble)
    generous = compute(
        initial=initial,
        changes=changes,
        gaps=[GAP],
        start=start,
        end=NOW,
        available=frozenset({UP, TROUBLE}),
    )
    assert generous.percent == pytest.approx(1140 / 1260 * 100)


def test_an_outage_runs_on_through_a_gap_and_no_data_is_not_100_percent():
    start = NOW - 10 * H
    result = compute(
        initial=DOWN,
        changes=[(NOW - 6 * H, UP)],
        gaps=[(NOW - 9 * H, NOW - 8 * H)],
        start=start,
        end=NOW,
        available=frozenset({UP}),
    )
    assert result.outages == 1 and result.down == 3 * 3600 and result.unknown == 3600
    assert result.longest_outage == 3 * 3600
    nothing = compute(initial=None, changes=[], start=start, end=NOW)
    assert nothing.percent is None and nothing.percent_text == "no data"
    assert nothing.unknown == 10 * 3600
    almost = compute(initial=UP, changes=[(NOW - timedelta(seconds=1), DOWN)], start=start, end=NOW)
    assert almost.percent_text == "99.99 %"  # a real outage never rounds to 100 %


def test_periods():
    assert period_from({"period": "7d"}, now=NOW).start == NOW - 7 * 24 * H
    assert period_from({}, now=NOW).key == "30d"
    october = period_from({"month": "2026-10"}, now=NOW)
    assert (october.start.month, october.start.day, october.end.month, october.end.day) == (
        10,
        1,
        11,
        1,
    )
    assert october.label == "October 2026"
    november = period_from({"month": "2026-11"}, now=NOW)
    assert november.end == NOW  # a month still running ends now
    custom = period_from({"start": "2026-11-01", "end": "2026-11-02"}, now=NOW)
    assert custom.end - custom.start == 48 * H
    assert period_from({"period": "24h", "month": "2026-10"}, now=NOW).key == "24h"
    assert period_from({"month": "2026-13"}, now=NOW).key == "30d"


def _seed_history(customer):
    rows = []
    for hours, status in HISTORY:
        at = NOW - hours * H
        rows.append(StatusChange(customer=customer, to_status=int(status), at=at))
        rows.append(
            StatusChange(
                customer=customer,
                group_id=f"{customer.pk}-0",
                group_name="ERP",
                to_status=int(status),
                at=at,
            )
        )
    StatusChange.objects.bulk_create(rows)
    DataGap.objects.create(customer=customer, start=GAP[0], end=GAP[1])


@pytest.mark.django_db
def test_the_report_reads_the_history_with_the_state_before_the_window():
    with time_machine.travel(NOW, tick=False):
        acme = make_customer("Acme", groups=[("ERP", UP), ("Mail", UP)])
        _seed_history(acme)
        period = Period("24h", "last 24 h", NOW - 24 * H, NOW)
        rows = report([acme], period)
    assert [(r.customer, r.group) for r in rows] == [
        ("Acme", ""),
        ("Acme", "ERP"),
        ("Acme", "Mail"),
    ]
    customer, erp, mail_ = (r.availability for r in rows)
    assert customer.percent == pytest.approx(1080 / 1260 * 100) and customer.outages == 2
    assert erp.percent == customer.percent
    assert mail_.percent is None  # no history for Mail: no data, not 100 %


@pytest.mark.django_db
def test_availability_csv_columns_and_values(admin_client):
    with time_machine.travel(NOW, tick=False):
        acme = make_customer("Acme", groups=[("ERP", UP)])
        make_customer("=cmd|' /C calc'!A0", groups=[])  # a name a spreadsheet would run
        _seed_history(acme)
        response = admin_client.get("/availability.csv?period=24h")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="availability-24h-')
    lines = list(csv.reader(io.StringIO(response.content.decode())))
    assert lines[0] == AVAILABILITY_COLUMNS
    assert lines[0][:6] == [
        "customer",
        "group",
        "availability_percent",
        "downtime_minutes",
        "outages",
        "longest_outage_minutes",
    ]
    by_subject = {(line[0], line[1]): line for line in lines[1:]}
    assert by_subject[("Acme", "")][2:6] == ["85.714", "120.0", "2", "60.0"]
    assert by_subject[("Acme", "ERP")][2] == "85.714"
    assert ("'=cmd|' /C calc'!A0", "") in by_subject  # defused with a quote


@pytest.mark.django_db
def test_the_availability_page_and_a_month(admin_client):
    with time_machine.travel(NOW, tick=False):
        acme = make_customer("Acme", groups=[("ERP", UP)])
        _seed_history(acme)
        page = admin_client.get("/availability/?period=24h").content.decode()
        month = admin_client.get("/availability/?month=2026-11&period=").content.decode()
    assert "Availability · last 24 h" in page and "85.71 %" in page
    assert "Availability · November 2026" in month


@pytest.mark.django_db
def test_the_customer_page_loads_its_alerts_panel(admin_client):
    with time_machine.travel(NOW, tick=False):
        acme = make_customer("Acme", groups=[("ERP", UP)])
        _seed_history(acme)
        page = admin_client.get(f"/customers/{acme.pk}/").content.decode()
        panel = admin_client.get(f"/customers/{acme.pk}/alerts/").content.decode()
    assert f'hx-get="/customers/{acme.pk}/alerts/"' in page and "hx-preserve" in page
    assert "Alerts and availability" in panel
    assert panel.count(">85.71 %<") == 2  # the customer and ERP over 24 h
    assert "Mute (maintenance)" in panel


@pytest.mark.django_db
def test_the_grid_csv_follows_the_filters(admin_client):
    make_customer("Down Inc", worst=DOWN, groups=[("ERP", DOWN), ("Mail", UP)])
    make_customer("Fine Ltd", groups=[("ERP", UP)])
    response = admin_client.get("/grid.csv?problems=1")
    lines = list(csv.reader(io.StringIO(response.content.decode())))
    assert lines[0] == GRID_COLUMNS
    assert [line[0] for line in lines[1:]] == ["Down Inc"]
    row = dict(zip(lines[0], lines[1], strict=True))
    assert row["status"] == "Down" and row["problem_groups"] == "ERP (Down)"
    assert row["groups"] == "2" and row["groups_not_up"] == "1"
    everything = admin_client.get("/grid.csv?avail=24h&sort=name").content.decode()
    header = everything.splitlines()[0].split(",")
    assert header[-3:] == ["availability_24h_percent", "downtime_24h_minutes", "outages_24h"]
    assert [line.split(",")[0] for line in everything.splitlines()[1:]] == ["Down Inc", "Fine Ltd"]
