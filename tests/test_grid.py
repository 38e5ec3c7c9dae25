"""The grid page, its htmx partial and /grid.json: order, filters, search, sort, summary,
badges, staleness (never green), the JSON shape, login, and a query count that does not grow
with the number of customers or groups (PERF-01)."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from msp_dashboard.site24x7 import Status
from portals.models import Customer
from tests.grid_support import add_token, make_customer, seed_many
from tests.roles_support import TOKEN_MANAGER, VIEWER, make_user
from tokens.models import Credential, CredentialKind, CredentialOrigin, CredentialState

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def rows_in(content: bytes) -> list[tuple[int, str]]:
    """(customer id, data-status) of every row, in page order."""
    found = re.findall(rb'<article class="row[^"]*" id="c-(\d+)" data-customer="\d+" '
                       rb'data-status="([a-z-]+)"', content)  # fmt: skip
    return [(int(pk), status.decode()) for pk, status in found]


def names_in(client, query: str = "") -> list[str]:
    data = client.get(f"/grid.json{query}").json()
    return [c["name"] for c in data["customers"]]


@pytest.fixture
def mixed():
    """One customer per status, named so that name order differs from status order."""
    return {
        "up": make_customer("A Up", worst=Status.UP, groups=[("Web", Status.UP)]),
        "maintenance": make_customer(
            "B Maint", worst=Status.MAINTENANCE, groups=[("Web", Status.MAINTENANCE)]
        ),
        "trouble": make_customer(
            "C Trouble", worst=Status.TROUBLE, groups=[("Mail", Status.TROUBLE), ("Web", Status.UP)]
        ),
        "down": make_customer(
            "D Down", worst=Status.DOWN, groups=[("Web", Status.DOWN), ("VPN", Status.UP)]
        ),
        "suspended": make_customer(
            "E Susp", worst=Status.SUSPENDED, groups=[("Web", Status.SUSPENDED)]
        ),
        "critical": make_customer(
            "F Crit", worst=Status.CRITICAL, groups=[("DB", Status.CRITICAL)]
        ),
        "config": make_customer(
            "G Config", worst=Status.CONFIG_ERROR, groups=[("API", Status.CONFIG_ERROR)]
        ),
        "discovery": make_customer(
            "H Disc", worst=Status.DISCOVERY, groups=[("New", Status.DISCOVERY)]
        ),
        "stale": make_customer(
            "I Stale",
            worst=Status.UP,
            groups=[("Web", Status.UP)],
            fetched=timezone.now() - timedelta(hours=2),
        ),
    }


# --- access ------------------------------------------------------------------------------------


def test_every_grid_url_needs_a_login(client):
    for url in ("/", "/grid/rows/", "/grid.json"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")


def test_an_expired_session_on_a_wall_screen_goes_to_the_login_page_not_into_the_grid(client):
    response = client.get(
        "/grid/rows/?wall=1", HTTP_HX_CURRENT_URL="http://testserver/?wall=1", **HX
    )
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/login/?next=%2F%3Fwall%3D1"


def test_grid_json_and_rows_answer_get_only(admin_client):
    for url in ("/", "/grid/rows/", "/grid.json"):
        assert admin_client.post(url).status_code == 405


# --- order, filters, search, sort ----------------------------------------------------------------


def test_grid_is_worst_first_then_by_name_and_stale_ranks_as_unknown(admin_client, mixed):
    response = admin_client.get("/")
    assert response.status_code == 200
    order = [status for _, status in rows_in(response.content)]
    assert order == [
        "down", "critical", "trouble", "config-error", "stale", "maintenance", "discovery",
        "suspended", "up",
    ]  # fmt: skip
    assert names_in(admin_client)[:2] == ["D Down", "F Crit"]


def test_same_status_sorts_by_name(admin_client):
    for name in ("Zulu", "alpha", "Mike"):
        make_customer(name, worst=Status.DOWN, groups=[("Web", Status.DOWN)])
    assert names_in(admin_client) == ["alpha", "Mike", "Zulu"]


def test_sort_by_name_and_by_data_age(admin_client, mixed):
    assert names_in(admin_client, "?sort=name") == sorted(c.name for c in mixed.values())
    never = make_customer("Never", fetched=None)
    old = timezone.now() - timedelta(days=1)
    Customer.objects.filter(pk=mixed["up"].pk).update(data_fetched_at=old, last_success_at=old)
    by_age = names_in(admin_client, "?sort=age")
    assert by_age[:3] == [never.name, "A Up", "I Stale"]


def test_status_filter_one_or_several_and_stale_alias(admin_client, mixed):
    assert names_in(admin_client, "?status=down") == ["D Down"]
    assert names_in(admin_client, "?status=down,critical") == ["D Down", "F Crit"]
    assert names_in(admin_client, "?status=down&status=up") == ["D Down", "A Up"]
    assert names_in(admin_client, "?status=stale") == ["I Stale"]
    assert names_in(admin_client, "?status=unknown") == ["I Stale"]
    assert len(names_in(admin_client, "?status=nonsense")) == len(mixed)


def test_problems_only_keeps_down_critical_trouble_config_and_stale(admin_client, mixed):
    assert names_in(admin_client, "?problems=1") == [
        "D Down", "F Crit", "C Trouble", "G Config", "I Stale",
    ]  # fmt: skip
    html = admin_client.get("/?problems=1").content.decode()
    # Up groups fold into one chip per customer; the problem groups stay visible.
    assert '1 group</span><span class="cs">Up' in html
    assert ">Mail<" in html


def test_search_matches_customer_names_and_group_names(admin_client, mixed):
    assert names_in(admin_client, "?q=trouble") == ["C Trouble"]
    data = admin_client.get("/grid.json?q=vpn").json()
    assert [c["name"] for c in data["customers"]] == ["D Down"]
    # A group match shows only the matching groups of that customer.
    assert [g["name"] for g in data["customers"][0]["groups"]] == ["VPN"]
    assert names_in(admin_client, "?q=nothing-like-this") == []
    empty = admin_client.get("/?q=nothing-like-this").content.decode()
    assert "No customer matches these filters" in empty


def test_filters_live_in_the_url_and_the_partial_keeps_them(admin_client, mixed):
    page = admin_client.get("/?q=web&problems=1&sort=name").content.decode()
    assert 'hx-get="/grid/rows/?q=web&amp;problems=1&amp;sort=name"' in page
    assert 'value="web"' in page
    rows = admin_client.get("/grid/rows/?q=web&problems=1&sort=name", **HX)
    assert rows["HX-Replace-Url"] == "/?q=web&problems=1&sort=name"
    assert 'hx-get="/grid/rows/?q=web&amp;problems=1&amp;sort=name"' in rows.content.decode()


# --- the page and the partial are one fragment ---------------------------------------------------


def test_the_partial_is_the_fragment_the_page_includes(admin_client, mixed):
    page = admin_client.get("/").content.decode()
    partial = admin_client.get("/grid/rows/", **HX).content.decode()
    start = page.index('<section id="grid-live"')
    end = page.index("</section>", start) + len("</section>")
    fragment = page[start:end]
    assert rows_in(fragment.encode()) == rows_in(partial.encode())
    # Everything but the volatile timestamps is identical.
    strip = re.compile(
        r'(data-served-at|data-since|datetime|name="csrfmiddlewaretoken" value)="[^"]*"'
        r"|\d+ s ago|just now"
    )
    assert strip.sub("", fragment) == strip.sub("", partial[partial.index("<section") :].strip())
    assert "<html" not in partial
    assert 'hx-trigger="live-poll' in partial
    assert 'data-poll="5"' in partial


def test_title_and_problem_count_for_the_favicon(admin_client, mixed):
    page = admin_client.get("/").content.decode()
    assert "<title>5 problems · MSP dashboard</title>" in page
    assert 'data-problems="5"' in page
    for customer in Customer.objects.exclude(worst_status=Status.UP):
        customer.delete()
    Customer.objects.filter(name="I Stale").delete()
    page = admin_client.get("/").content.decode()
    assert "<title>All clear · MSP dashboard</title>" in page
    assert 'data-problems="0"' in page


def test_summary_counts_customers_and_groups_per_status_and_stale(admin_client, mixed):
    summary = admin_client.get("/grid.json?status=down").json()["summary"]
    # The summary covers every customer, whatever the filter: it is the filter bar.
    assert summary["customers"] == 9
    assert summary["problems"] == 5
    assert summary["stale"] == 1
    assert summary["customers_by_status"] == {
        "down": 1, "critical": 1, "trouble": 1, "config-error": 1, "unknown": 1,
        "maintenance": 1, "discovery": 1, "suspended": 1, "up": 1,
    }  # fmt: skip
    # Groups of a stale customer count as unknown, never as their last status.
    assert summary["groups_by_status"]["up"] == 3
    assert summary["groups_by_status"]["unknown"] == 1
    assert summary["groups"] == 11
    html = admin_client.get("/").content.decode()
    assert "<b>1</b> stale customer" in html
    assert 'href="?status=down"' in html


# --- staleness and badges --------------------------------------------------------------------


def test_stale_data_is_never_shown_as_green(admin_client, settings):
    settings.REFRESH_INTERVAL = 300
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        customer = make_customer("Fresh then old", worst=Status.UP, groups=[("Web", Status.UP)])
        fresh = admin_client.get("/grid.json").json()["customers"][0]
        assert fresh["display_status"]["slug"] == "up"
        assert fresh["stale"] is False
    with time_machine.travel(start + timedelta(minutes=11), tick=False):
        row = admin_client.get("/grid.json").json()["customers"][0]
        html = admin_client.get("/").content.decode()
    assert row["stale"] is True
    assert row["display_status"] == {"code": -1, "label": "Stale", "slug": "stale"}
    assert row["worst_status"] == {"code": 1, "label": "Up"}
    assert row["staleness_reason"] == "data older than 10 min"
    assert row["data_age_seconds"] == 660
    assert [b["kind"] for b in row["badges"]] == ["stale"]
    article = html[html.index(f'id="c-{customer.pk}"') :]
    article = article[: article.index("</article>")]
    assert 'data-status="stale"' in article
    assert "s-up" not in article  # no green anywhere in the row
    assert 'class="cell s-stale i-up"' in article
    assert "was Up" in article
    assert "data older than 10 min; last known: Up" in article


def test_a_failed_last_refresh_makes_the_customer_stale_with_the_reason(admin_client):
    now = timezone.now()
    make_customer(
        "Failing",
        worst=Status.UP,
        groups=[("Web", Status.UP)],
        fetched=now - timedelta(minutes=1),
        last_attempt_at=now,
        last_error="timeout",
    )
    row = admin_client.get("/grid.json").json()["customers"][0]
    assert row["stale"] is True
    assert row["staleness_reason"] == "last refresh failed: timeout"
    assert row["problem"] is True


def test_a_never_refreshed_customer_is_stale(admin_client):
    make_customer("New", fetched=None)
    row = admin_client.get("/grid.json").json()["customers"][0]
    assert row["stale"] is True
    assert row["staleness_reason"] == "never refreshed"
    assert row["data_age_seconds"] is None


def test_badges_throttled_paused_credential_invalid_and_none(admin_client, settings):
    settings.TIME_ZONE = "UTC"
    now = timezone.now()
    until = (now + timedelta(minutes=30)).replace(second=0, microsecond=0)
    make_customer("Throttled", throttled_until=until)
    make_customer("Paused", paused_until=until, consecutive_failures=5)
    make_customer("Invalid", token="invalid")
    make_customer("Nothing", token=None)
    rotated = make_customer("Rotated", token="invalid")
    add_token(rotated, state="active")  # an active one is used: no badge
    badges = {
        c["name"]: [b["kind"] for b in c["badges"]]
        for c in admin_client.get("/grid.json").json()["customers"]
    }
    assert badges["Throttled"] == ["throttled"]
    assert badges["Paused"] == ["paused"]
    assert badges["Invalid"] == ["credential-invalid"]
    assert badges["Nothing"] == ["no-credential"]
    assert badges["Rotated"] == []
    html = admin_client.get("/").content.decode()
    hhmm = until.strftime("%H:%M")
    assert f"Throttled until {hhmm}</span>" in html
    assert f"Paused until {hhmm}</span>" in html
    assert "Paused by the circuit breaker after 5 failures in a row" in html
    assert ">Credential invalid</span>" in html
    assert ">No credential</span>" in html


def test_oauth_customers_take_their_credential_state_from_the_msp_identity(admin_client):
    identity = Credential.objects.create(
        kind=CredentialKind.OAUTH,
        secret_ciphertext="v1:test:x",
        state=CredentialState.INVALID,
        origin=CredentialOrigin.CONNECTED,
    )
    make_customer("Through OAuth", token=None, auth_generation="oauth", msp_credential=identity)
    make_customer("No identity", token=None, auth_generation="oauth", portal_id="", zaaid="9")
    badges = {
        c["name"]: [b["kind"] for b in c["badges"]]
        for c in admin_client.get("/grid.json").json()["customers"]
    }
    assert badges == {"Through OAuth": ["credential-invalid"], "No identity": ["no-credential"]}


def test_inactive_customers_are_not_on_the_grid(admin_client):
    make_customer("Gone", is_active=False)
    make_customer("Here")
    assert names_in(admin_client) == ["Here"]


# --- the JSON ------------------------------------------------------------------------------------


def test_grid_json_shape(admin_client):
    customer = make_customer(
        "Shape",
        worst=Status.DOWN,
        groups=[("Web", Status.DOWN), ("Mail", Status.UP)],
        subgroups=[("Web - EU", Status.DOWN)],
    )
    response = admin_client.get("/grid.json")
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    data = response.json()
    assert set(data) == {
        "generated_at", "refresh_interval", "stale_after_seconds", "filters", "summary",
        "count", "banners", "customers",
    }  # fmt: skip
    row = data["customers"][0]
    assert set(row) == {
        "id", "name", "url", "data_centre", "auth_generation", "worst_status", "display_status",
        "problem", "data_age_seconds", "data_fetched_at", "last_success_at", "stale",
        "staleness_reason", "badges", "groups",
    }  # fmt: skip
    assert row["id"] == customer.pk
    assert row["url"] == f"/customers/{customer.pk}/"
    assert row["worst_status"] == {"code": 0, "label": "Down"}
    assert row["display_status"] == {"code": 0, "label": "Down", "slug": "down"}
    assert row["stale"] is False and row["staleness_reason"] == ""
    # Top groups only, worst first; the subgroup is on the customer page.
    assert [g["name"] for g in row["groups"]] == ["Web", "Mail"]
    group = row["groups"][0]
    assert set(group) == {
        "group_id", "name", "status", "monitors", "error_monitors", "top_group", "status_since",
    }  # fmt: skip
    assert group["status"] == {"code": 0, "label": "Down"}
    assert (group["monitors"], group["error_monitors"], group["top_group"]) == (4, 2, True)


def test_no_secret_or_ciphertext_reaches_the_grid(admin_client):
    customer = make_customer("Secretive")
    Credential.objects.filter(customer=customer).update(secret_ciphertext="v1:k:CANARY-CIPHER")
    for url in ("/", "/grid/rows/", "/grid.json"):
        body = admin_client.get(url).content.decode()
        assert "CANARY-CIPHER" not in body
        assert "••••wxyz" in html.unescape(body) or url == "/grid.json"


# --- PERF-01: queries do not grow with customers or groups -----------------------------------


def _queries(client, url: str, **extra) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, **extra)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("who", ["superuser", "operator"])
def test_query_count_is_the_same_for_10_and_500_customers(
    client, django_user_model, django_assert_max_num_queries, who, settings, tmp_path
):
    from tests.refresh_support import isolate_file_cache

    isolate_file_cache(settings, tmp_path)  # var/cache is cleared by other test runs at will
    if who == "superuser":
        user = django_user_model.objects.create_superuser("boss")
    else:
        user = make_user("operator", TOKEN_MANAGER)
    client.force_login(user)
    urls = [("/", {}), ("/grid/rows/", HX), ("/grid.json", {}), ("/?wall=1", {})]
    client.get("/")  # warm what is cached per process (the alerts' snapshot, the last look)
    seed_many(10, groups=10, prefix="Small")
    small = [_queries(client, url, **extra) for url, extra in urls]
    seed_many(490, groups=10, prefix="Large")
    assert Customer.objects.count() == 500
    with django_assert_max_num_queries(6):
        client.get("/")
    large = [_queries(client, url, **extra) for url, extra in urls]
    assert small == large, (small, large)
    # user, customers, groups (the session comes from the cache); a role-holding user adds
    # one permission query (portals.accounts.RoleBackend) and one scope query (sync button)
    assert max(large) <= 5
    assert large[0] == (3 if who == "superuser" else 5)


# --- buttons -----------------------------------------------------------------------------------


def test_refresh_now_needs_post_csrf_and_the_permission(client, django_user_model, settings):
    from django.test import Client

    customer = make_customer("Button")
    viewer = make_user("viewer", VIEWER)
    client.force_login(viewer)
    url = f"/customers/{customer.pk}/refresh/"
    assert client.get(url).status_code == 405
    assert client.post(url).status_code == 403
    assert client.post("/customers/999999/refresh/").status_code == 404

    boss = django_user_model.objects.create_superuser("boss")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(boss)
    assert strict.post(url).status_code == 403
    strict.get("/")
    token = strict.cookies["csrftoken"].value
    response = strict.post(url, {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_refresh_now_through_htmx_answers_with_events(
    admin_client, django_capture_on_commit_callbacks
):
    customer = make_customer("Htmx button")
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(f"/customers/{customer.pk}/refresh/", **HX)
    assert response.status_code == 204
    assert response.content == b""
    events = json.loads(response["HX-Trigger"])
    assert events["rows-changed"] is True
    assert events["toast"]["message"] == "Refresh of Htmx button queued."
    assert len(callbacks) == 1  # enqueued when the transaction commits (not run here)


def test_refresh_now_of_a_customer_without_credential_says_why(admin_client):
    customer = make_customer("No key", token=None)
    response = admin_client.post(
        f"/customers/{customer.pk}/refresh/", {"next": f"/customers/{customer.pk}/"}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/customers/{customer.pk}/"
    page = admin_client.get(response["Location"]).content.decode()
    assert "No key has no usable credential" in page


def test_refresh_now_ignores_a_foreign_next_url(admin_client):
    customer = make_customer("Redirect")
    response = admin_client.post(
        f"/customers/{customer.pk}/refresh/", {"next": "https://evil.example/"}
    )
    assert response["Location"] == "/"


def test_sync_reads_customers_from_the_simulator(admin_client, simulator, django_user_model):
    from tests.refresh_support import msp_authtoken_credential, sim_customers

    msp_authtoken_credential(simulator)
    response = admin_client.post("/customers/sync/", **HX)
    assert response.status_code == 204
    assert "Customers synced: 8 created." in response["HX-Trigger"]
    assert Customer.objects.count() == len(sim_customers(simulator))
    viewer = make_user("viewer2", VIEWER)
    admin_client.force_login(viewer)
    assert admin_client.post("/customers/sync/").status_code == 403


def test_sync_without_an_msp_identity_says_what_to_do(admin_client):
    response = admin_client.post("/customers/sync/", follow=True)
    assert "No MSP identity to sync with" in response.content.decode()
