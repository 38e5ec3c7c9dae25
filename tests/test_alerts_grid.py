"""What the alerts add to the grid: acknowledged and muted problems (badges, order), flapping,
"since you last looked", the availability column, the Site24x7 incident banner (over real
HTTP against the simulator, with its alerts grouped into one notice), and the queries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.models import AlertState, Delivery, DeliveryState, EventKind, UpstreamIncident, UserSeen
from alerts.services import silence_acknowledge, silence_mute
from msp_dashboard.site24x7 import Status
from tests.alerts_support import Clock, channel, store
from tests.grid_support import make_customer, seed_many

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_cache")]
pytest_plugins = ["tests.alerts_support"]

HX = {"HTTP_HX_REQUEST": "true"}
UP, DOWN, TROUBLE = Status.UP, Status.DOWN, Status.TROUBLE


@pytest.fixture(autouse=True)
def _long_sessions(settings):
    """These tests move a frozen clock hours ahead; the session must not time out."""
    settings.SESSION_IDLE_TIMEOUT = settings.SESSION_ABSOLUTE_TIMEOUT = 7 * 24 * 3600


def names(client, url="/grid.json") -> list[str]:
    return [c["name"] for c in client.get(url).json()["customers"]]


def badges(client, name: str, url="/grid.json") -> dict[str, str]:
    row = next(c for c in client.get(url).json()["customers"] if c["name"] == name)
    return {b["kind"]: b["label"] for b in row["badges"]}


def test_acknowledged_and_muted_problems_sort_below_the_others(
    admin_client, admin_user, django_capture_on_commit_callbacks
):
    make_customer("Alpha", worst=DOWN, groups=[("ERP", DOWN)])
    beta = make_customer("Beta", worst=DOWN, groups=[("ERP", DOWN)])
    make_customer("Gamma", worst=TROUBLE, groups=[("Mail", TROUBLE)])
    make_customer("Zulu", groups=[("Web", UP)])
    assert names(admin_client) == ["Alpha", "Beta", "Gamma", "Zulu"]
    alpha = beta.__class__.objects.get(name="Alpha")
    with django_capture_on_commit_callbacks(execute=True):
        silence_acknowledge(customer=alpha, note="ISP outage, ticket 4711", actor=admin_user)
        silence_mute(customer=beta, until=timezone.now() + timedelta(hours=2), note="upgrade")
    # Down and Down, but taken care of: below the unacknowledged Trouble, above the Up.
    assert names(admin_client) == ["Gamma", "Alpha", "Beta", "Zulu"]
    assert badges(admin_client, "Alpha")["acked"].startswith("Acked by admin · ")
    assert badges(admin_client, "Beta")["muted"].startswith("Muted until ")
    page = admin_client.get("/").content.decode()
    alpha_row = re.search(rf'<article class="([^"]*)" id="c-{alpha.pk}"', page)
    assert "is-acked" in alpha_row.group(1) and "is-problem" in alpha_row.group(1)
    assert "ISP outage, ticket 4711" in page  # the note, in the badge's title
    assert "Acknowledge…" in page and "Mute (maintenance)…" in page  # the row menu


def test_acknowledging_every_problem_group_quiets_the_customer(
    admin_client, django_capture_on_commit_callbacks
):
    acme = make_customer("Acme", worst=DOWN, groups=[("ERP", DOWN), ("Mail", TROUBLE)])
    make_customer("Beta", worst=TROUBLE, groups=[("Web", TROUBLE)])
    erp, mail_ = (g.group_id for g in acme.groups.order_by("name"))
    with django_capture_on_commit_callbacks(execute=True):
        silence_acknowledge(customer=acme, group_id=erp)
    assert names(admin_client) == ["Acme", "Beta"]  # Mail is still nobody's
    assert badges(admin_client, "Acme")["acked"] == "ERP: acked by system"
    with django_capture_on_commit_callbacks(execute=True):
        silence_acknowledge(customer=acme, group_id=mail_)
    assert names(admin_client) == ["Beta", "Acme"]


def test_the_acknowledge_dialog_posts_and_closes(admin_client):
    acme = make_customer("Acme", worst=DOWN, groups=[("ERP", DOWN)])
    form = admin_client.get(f"/customers/{acme.pk}/acknowledge/", **HX).content.decode()
    assert 'id="alerts-form"' in form and "<html" not in form and "Group ERP (Down)" in form
    response = admin_client.post(
        f"/customers/{acme.pk}/acknowledge/", {"note": "looking", "expires": "4"}, **HX
    )
    assert response["HX-Trigger"] == "credentials-changed"
    assert 'role="status"' in response.content.decode()
    ack = acme.silences.get()
    assert ack.note == "looking" and ack.expires_at is not None
    # Nothing to acknowledge on an Up customer: the form says so.
    fine = make_customer("Fine", groups=[("Web", UP)])
    refused = admin_client.post(f"/customers/{fine.pk}/acknowledge/", {"note": "x"}, **HX)
    assert refused.status_code == 400 and "Nothing to acknowledge" in refused.content.decode()


def test_a_viewer_may_not_acknowledge_and_nobody_outside_the_scope(client, django_user_model):
    from portals.accounts import user_set_role, user_set_scope
    from portals.models import CustomerGroup

    def make_user(name, role):  # no password: hashing one costs a second
        user = django_user_model.objects.create_user(name)
        user_set_role(user=user, role=role)
        return user

    acme = make_customer("Acme", worst=DOWN, groups=[("ERP", DOWN)])
    other = make_customer("Other", worst=DOWN, groups=[("ERP", DOWN)])
    client.force_login(make_user("viewer", "Viewer"))
    assert client.post(f"/customers/{acme.pk}/acknowledge/", {"note": "x"}).status_code == 403
    operator = make_user("operator", "Operator")

    group = CustomerGroup.objects.create(name="Gold")
    group.customers.add(acme)
    user_set_scope(user=operator, groups=[group])
    client.force_login(operator)
    assert client.post(f"/customers/{other.pk}/acknowledge/", {"note": "x"}).status_code == 404
    assert client.post(f"/customers/{acme.pk}/acknowledge/", {"note": "x"}).status_code == 302


def test_customers_that_changed_since_the_last_look_stand_out(
    client, admin_user, django_capture_on_commit_callbacks, settings
):
    settings.SEEN_VISIT_GAP = 1800
    settings.REFRESH_INTERVAL = 3600  # data stays fresh over the hour away below
    acme = make_customer("Acme", fetched=None, groups=[])
    make_customer("Calm", groups=[("Web", UP)])
    clock, capture = Clock(), django_capture_on_commit_callbacks
    store(clock, acme, [("ERP", UP)], capture=capture)
    client.force_login(admin_user)

    def look() -> str:
        """A full page load, recorded as the page's script does (a POST: the GET changes
        nothing, SEC-03)."""
        page = client.get("/").content.decode()
        assert client.post("/alerts/seen/touch/").status_code == 204
        return page

    with clock.at():
        assert not UserSeen.objects.exists()
        page = look()  # the first look: nothing stands out
    assert "is-new" not in page
    assert UserSeen.objects.count() == 1
    store(clock, acme, [("ERP", DOWN)], capture=capture)  # while the page is open
    with clock.at():
        rows = client.get("/grid/rows/", **HX).content.decode()
        assert badges(client, "Acme")["new"] == "New: Down"
        assert "new" not in badges(client, "Calm")
    assert "is-new" in rows
    with clock.at():  # another page load in the same visit: still there
        assert "is-new" in look()
        client.post("/alerts/seen/")  # "mark all as seen"
        assert "is-new" not in look()
    store(clock, acme, [("ERP", UP)], capture=capture)
    clock.tick(3600)  # away for an hour: a new visit
    with clock.at():
        assert badges(client, "Acme", "/grid.json")["new"] == "Recovered"
        assert "Recovered" in look()
        assert "Recovered" in client.get("/grid/rows/", **HX).content.decode()  # the new visit


def test_flapping_is_flagged_on_the_grid(admin_client, django_capture_on_commit_callbacks):
    acme = make_customer("Acme", fetched=None, groups=[])
    clock, capture = Clock(), django_capture_on_commit_callbacks
    for status in (UP, DOWN, UP, DOWN, UP):
        store(clock, acme, [("ERP", status), ("Mail", UP)], capture=capture)
    assert AlertState.objects.filter(customer=acme, flapping=True).count() == 2  # worst and ERP
    with clock.at():
        label = badges(admin_client, "Acme")["flapping"]
        page = admin_client.get("/").content.decode()
    assert label == "Flapping: ERP"
    assert "is-flapping" in page and "4 status changes in the last 60 min" in page
    clock.tick(3601)
    with clock.at():  # an hour later with no refresh in between: no longer flapping
        assert "flapping" not in badges(admin_client, "Acme")


def test_the_availability_column(admin_client):
    acme = make_customer("Acme", groups=[("ERP", UP)])
    from portals.models import StatusChange

    now = timezone.now()
    StatusChange.objects.create(customer=acme, to_status=UP, at=now - timedelta(hours=30))
    StatusChange.objects.create(customer=acme, to_status=DOWN, at=now - timedelta(hours=6))
    StatusChange.objects.create(customer=acme, to_status=UP, at=now - timedelta(hours=4))
    label = badges(admin_client, "Acme", "/grid.json?avail=24h")["avail-down"]
    assert re.fullmatch(r"91\.6\d % · 24 h", label), label
    page = admin_client.get("/?avail=24h").content.decode()
    assert 'option value="24h" selected' in page
    live = re.search(r'id="grid-live"[^>]*?hx-get="([^"]*)"', page, re.S).group(1)
    assert "avail=24h" in live  # the polls keep the column
    assert "avail-down" not in badges(admin_client, "Acme")  # off by default


def test_the_grid_costs_no_query_more_for_more_customers(
    client, admin_user, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    seed_many(10, groups=5, prefix="Small")
    first = make_customer("Acked", worst=DOWN, groups=[("ERP", DOWN)])
    with django_capture_on_commit_callbacks(execute=True):
        silence_acknowledge(customer=first, actor=admin_user)

    def count(url, **extra):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url, **extra).status_code == 200
        return len(ctx.captured_queries)

    urls = [("/", {}), ("/grid/rows/", HX), ("/grid.json", {}), ("/grid.json?avail=7d", {})]
    cold = [count(url, **extra) for url, extra in urls]
    warm = [count(url, **extra) for url, extra in urls]
    seed_many(90, groups=5, prefix="Large")
    large = [count(url, **extra) for url, extra in urls]
    # Warm: the grid's own queries only (the alerts' snapshot and the last look are cached);
    # the availability column adds its four queries once a minute.
    assert warm[:3] == large[:3]
    assert large[3] <= warm[3] + 4
    assert cold[0] <= warm[0] + 5  # snapshot (3) and last look (read + write) when cold


def test_a_failing_data_centre_is_one_banner_and_one_notice(
    simulator, admin_client, listener, eager, django_capture_on_commit_callbacks
):
    from portals.models import Customer
    from portals.services import customer_refresh
    from tests.refresh_support import fault, legacy_customers, sim_post, upstream_of

    channel("webhook", url=listener.hook(), include_groups=False)
    customers = legacy_customers(simulator, count=5)
    Customer.objects.filter(pk__in=[c.pk for c in customers]).update(data_centre="EU")
    for customer in customers:  # all Up to begin with
        for group in upstream_of(simulator, customer)["groups"]:
            sim_post(
                simulator,
                "status",
                {"customer": customer.portal_id, "group_id": group["group_id"], "status": 1},
            )
    capture = django_capture_on_commit_callbacks

    def round_():
        for customer in customers:
            with capture(execute=True):
                customer_refresh(customer_id=customer.pk, manual=True)

    round_()
    baseline = len(listener.received)
    fault(simulator, endpoint="monitor_groups_status", kind="status", http_status=503)
    round_()
    round_()  # held for two refreshes: every customer would alert "Stale" now
    incident = UpstreamIncident.objects.get(ended_at__isnull=True)
    assert (incident.data_centre, incident.failing, incident.considered) == ("EU", 5, 5)
    notices = [r.json for r in listener.received[baseline:]]
    assert [n["kind"] for n in notices] == ["upstream_down"]
    assert notices[0]["title"] == "Site24x7 API in data centre EU is failing"
    assert "3 of 5 customers in data centre EU cannot be refreshed (server)" in notices[0]["text"]
    held = Delivery.objects.filter(event__kind=EventKind.PROBLEM, state=DeliveryState.SUPPRESSED)
    assert held.count() == 5
    assert set(
        Delivery.objects.exclude(state="suppressed").values_list("event__kind", flat=True)
    ) == {"upstream_down"}
    assert {d.reason for d in held} == {"Site24x7 API failing in EU"}

    since = timezone.localtime(incident.since).strftime("%H:%M")
    page = admin_client.get("/").content.decode()
    assert f"Site24x7 API in data centre EU is failing since {since}" in page
    assert page.count('class="banner banner-upstream"') == 1
    assert admin_client.get("/grid.json").json()["banners"][0]["data_centre"] == "EU"

    simulator_faults_clear(simulator)
    round_()
    assert not UpstreamIncident.objects.filter(ended_at__isnull=True).exists()
    after = [r.json["kind"] for r in listener.received[baseline + 1 :]]
    assert after == ["upstream_up"]  # no recovery per customer: nobody was told they failed
    assert "banner-upstream" not in admin_client.get("/").content.decode()


def simulator_faults_clear(sim) -> None:
    from tests.refresh_support import sim_post

    sim_post(sim, "faults/clear")


def test_the_sweep_closes_an_incident_once_its_customers_stop_failing(
    django_capture_on_commit_callbacks,
):
    from alerts.services import alerts_sweep

    now = timezone.now()
    UpstreamIncident.objects.create(data_centre="AU", since=now - timedelta(hours=1))
    with time_machine.travel(now, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert alerts_sweep().incidents_closed == 1
    assert UpstreamIncident.objects.get().ended_at == now
