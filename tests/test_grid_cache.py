"""The grid's row cache and its 204 path never show anything older than the database (issue 7).

Rows are cached by content (portals.queries.RowCache): each request reads every row and group
and finds a rendered row only when everything it shows is equal. These tests change the
database behind the cache's back (QuerySet.update: no signal, no save(), nothing to invalidate
anything) and move the clock, and check the very next response."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from msp_dashboard.site24x7 import Status
from portals.models import Customer, MonitorGroup
from portals.queries import ROW_CACHE, forget_rendered_rows
from tests.grid_support import make_customer
from tokens.models import Credential, CredentialState

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
LOCAL_CACHE = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture(autouse=True)
def _empty_row_cache():
    forget_rendered_rows()
    yield
    forget_rendered_rows()


def partial(client, query: str = "", **extra) -> str:
    response = client.get(f"/grid/rows/{query}", **HX, **extra)
    assert response.status_code == 200
    return response.content.decode()


def article(html: str, customer) -> str:
    start = html.index(f'id="c-{customer.pk}"')
    return html[start : html.index("</article>", start)]


@pytest.fixture
def customers():
    return [
        make_customer("Alpha", worst=Status.UP, groups=[("Web", Status.UP), ("Mail", Status.UP)]),
        make_customer("Bravo", worst=Status.DOWN, groups=[("VPN", Status.DOWN)]),
        make_customer("Charlie", worst=Status.UP, groups=[("DNS", Status.UP)]),
    ]


def test_a_group_changed_in_the_database_shows_in_the_next_partial(admin_client, customers):
    alpha = customers[0]
    partial(admin_client)
    hits = ROW_CACHE.hits
    before = partial(admin_client)
    assert ROW_CACHE.hits >= hits + len(customers)  # the second poll came from the cache
    assert 'class="cell s-up i-up" data-g="' in article(before, alpha)

    web = MonitorGroup.objects.get(customer=alpha, name="Web")
    MonitorGroup.objects.filter(pk=web.pk).update(status=int(Status.DOWN), error_monitors=3)
    Customer.objects.filter(pk=alpha.pk).update(worst_status=int(Status.DOWN))
    after = partial(admin_client)
    row = article(after, alpha)
    assert 'data-status="down"' in row
    assert f'class="cell s-down i-down" data-g="{web.group_id}"' in row
    assert "3 of 4 not up" in row
    # Worst first: Alpha now sorts with the Down customers.
    order = re.findall(r'<article class="row[^"]*" id="c-(\d+)"', after)
    assert order[:2] == [str(alpha.pk), str(customers[1].pk)]


def test_every_kind_of_change_reaches_the_next_response(admin_client, customers):
    alpha, bravo, charlie = customers
    for url in ("/grid/rows/", "/", "/grid.json"):
        admin_client.get(url, **HX)  # warm every view
    Customer.objects.filter(pk=alpha.pk).update(name="Alpha renamed")
    Credential.objects.filter(customer=bravo).update(state=CredentialState.INVALID)
    Customer.objects.filter(pk=charlie.pk).update(is_active=False)
    MonitorGroup.objects.create(customer=alpha, group_id="new-1", name="Brand new group", status=0)
    MonitorGroup.objects.filter(customer=bravo).delete()
    for html in (partial(admin_client), admin_client.get("/").content.decode()):
        assert "Alpha renamed" in html and "Brand new group" in html
        assert ">Credential invalid</span>" in article(html, bravo)
        assert "No monitor groups yet" in article(html, bravo)
        assert f'id="c-{charlie.pk}"' not in html
    data = admin_client.get("/grid.json").json()
    assert [c["name"] for c in data["customers"]] == ["Bravo", "Alpha renamed"]


def test_a_cached_render_is_byte_for_byte_a_fresh_render(admin_client, customers):
    with time_machine.travel(timezone.now() + timedelta(seconds=95), tick=False):
        cold = partial(admin_client)
        warm = partial(admin_client)
        forget_rendered_rows()
        again = partial(admin_client)
    assert cold == warm == again
    assert "\x00" not in cold
    assert "1 min ago" in cold  # the clock texts are filled in for this response


def test_the_clock_alone_makes_a_cached_row_stale(admin_client, settings, customers):
    settings.REFRESH_INTERVAL = 300
    alpha = customers[0]
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        assert 'data-status="up"' in article(partial(admin_client), alpha)
        assert 'data-status="up"' in article(partial(admin_client), alpha)
    with time_machine.travel(start + timedelta(minutes=11), tick=False):
        row = article(partial(admin_client), alpha)
        data = admin_client.get("/grid.json").json()
    assert 'data-status="stale"' in row
    assert "s-up" not in row  # never the last known green
    assert "data older than 10 min; last known: Up" in row
    assert "11 min ago" in row
    json_row = next(c for c in data["customers"] if c["id"] == alpha.pk)
    assert json_row["stale"] is True
    assert json_row["data_age_seconds"] == 660


def test_badges_that_end_with_the_clock_end_in_the_cache_too(admin_client, settings):
    settings.TIME_ZONE = "UTC"
    now = timezone.now()
    until = now + timedelta(minutes=5)
    make_customer("Throttled", throttled_until=until)
    make_customer("Refreshing", lease_until=until, lease_token="t")
    html = partial(admin_client)
    assert "Throttled until" in html and "Refreshing&#8230;" in html  # Refreshing…
    with time_machine.travel(until + timedelta(seconds=1), tick=False):
        html = partial(admin_client)
    assert "Throttled until" not in html and "Refreshing&#8230;" not in html


def test_the_time_zone_is_part_of_the_rendering(admin_client, settings):
    settings.TIME_ZONE = "UTC"
    since = timezone.now().replace(hour=10, minute=30, second=0, microsecond=0)
    customer = make_customer("Zoned", groups=[("Web", Status.UP)])
    MonitorGroup.objects.filter(customer=customer).update(status_since=since)
    assert f"since {since:%d %b} 10:30" in partial(admin_client)
    settings.TIME_ZONE = "Asia/Kolkata"  # +05:30
    assert f"since {since:%d %b} 16:00" in partial(admin_client)


def test_an_unchanged_grid_is_answered_204_and_a_change_with_the_rows(admin_client, customers):
    first = admin_client.get("/grid/rows/", **HX)
    version = first["X-Grid-Version"]
    assert f'data-version="{version}"' in first.content.decode()
    page = admin_client.get("/").content.decode()
    assert f'data-version="{version}"' in page  # the page holds the same version

    later = timezone.now() + timedelta(seconds=40)
    with time_machine.travel(later, tick=False):
        # Only the clock moved ("just now" became "40 s ago"): the page ticks that itself.
        same = admin_client.get("/grid/rows/", HTTP_X_GRID_VERSION=version, **HX)
        assert same.status_code == 204
        assert same.content == b""
        assert same["X-Grid-Version"] == version
        MonitorGroup.objects.filter(customer=customers[2]).update(status=int(Status.TROUBLE))
        changed = admin_client.get("/grid/rows/", HTTP_X_GRID_VERSION=version, **HX)
    assert changed.status_code == 200
    assert changed["X-Grid-Version"] != version
    assert "Trouble" in article(changed.content.decode(), customers[2])
    # A stale version, or none, always gets the rows.
    assert admin_client.get("/grid/rows/", HTTP_X_GRID_VERSION="0" * 32, **HX).status_code == 200


def test_the_version_depends_on_the_filters_and_the_view(admin_client, customers):
    versions = {
        admin_client.get(f"/grid/rows/{query}", **HX)["X-Grid-Version"]
        for query in ("", "?sort=name", "?problems=1", "?wall=1", "?q=web")
    }
    assert len(versions) == 5


def test_rows_carry_a_digest_that_changes_with_their_content(admin_client, customers):
    alpha, bravo, _ = customers
    before = partial(admin_client)
    digest = {c.pk: re.search(r'data-v="([0-9a-f]+)"', article(before, c)).group(1)
              for c in customers}  # fmt: skip
    MonitorGroup.objects.filter(customer=alpha).update(monitors=9)
    after = partial(admin_client)
    assert re.search(r'data-v="([0-9a-f]+)"', article(after, alpha)).group(1) != digest[alpha.pk]
    assert re.search(r'data-v="([0-9a-f]+)"', article(after, bravo)).group(1) == digest[bravo.pk]


@pytest.mark.parametrize("micro", [0, 1, 500_000, 999_999])
def test_times_are_read_to_the_microsecond(admin_client, micro):
    """The grid reads times as seconds since 1970 (portals.queries.Epoch): still exact."""
    at = timezone.now().replace(microsecond=micro) - timedelta(seconds=30)
    customer = make_customer("Exact", groups=[("Web", Status.UP)], fetched=at)
    MonitorGroup.objects.filter(customer=customer).update(status_since=at)
    row = admin_client.get("/grid.json").json()["customers"][0]
    assert row["data_fetched_at"] == at.isoformat()
    assert row["groups"][0]["status_since"] == at.isoformat()


def test_the_row_digest_covers_the_row_element_itself(admin_client):
    """data-v covers the <article> attributes too (e.g. the token the row menu revokes)."""
    customer = make_customer("Tokened", groups=[("Web", Status.UP)])
    before = re.search(r'data-v="([0-9a-f]+)"', partial(admin_client)).group(1)
    Credential.objects.filter(customer=customer).update(secret_last4="zzzz")
    row = article(partial(admin_client), customer)
    assert 'data-masked="&#8226;&#8226;&#8226;&#8226;zzzz"' in row  # ••••zzzz
    assert re.search(r'data-v="([0-9a-f]+)"', row).group(1) != before


def test_a_poll_that_knows_the_page_gets_only_the_changed_rows(admin_client, customers, settings):
    settings.CACHES = LOCAL_CACHE  # what pages hold, safe from other runs clearing var/cache
    alpha, bravo, charlie = customers
    first = admin_client.get("/grid/rows/", **HX)
    assert "data-order" not in first.content.decode()  # a first answer has every row
    version = first["X-Grid-Version"]
    MonitorGroup.objects.filter(customer=charlie).update(status=int(Status.TROUBLE))
    Customer.objects.filter(pk=charlie.pk).update(worst_status=int(Status.TROUBLE))
    delta = admin_client.get("/grid/rows/", HTTP_X_GRID_VERSION=version, **HX)
    html = delta.content.decode()
    assert delta.status_code == 200
    assert re.findall(r'<article class="row[^"]*" id="c-(\d+)"', html) == [str(charlie.pk)]
    assert "Trouble" in article(html, charlie)
    order = re.search(r'<div class="rows" id="rows" data-base="(\w+)" data-order="([\d,]*)">', html)
    assert order.group(1) == version
    assert order.group(2) == f"{bravo.pk},{charlie.pk},{alpha.pk}"  # Down, Trouble, Up
    assert delta["X-Grid-Version"] != version
    # A version the server does not know (another process's, forgotten, forged): every row.
    for held in ("f" * 32, "not-a-version"):
        full = admin_client.get("/grid/rows/", HTTP_X_GRID_VERSION=held, **HX).content.decode()
        assert "data-order" not in full
        assert len(re.findall(r"<article ", full)) == 3
