"""The alerts in a real browser (Chromium through Playwright, a live server, the strict CSP):
the grid with acknowledged, muted, flapping and "new" customers and the Site24x7 incident
banner; acknowledging from a row's menu; the customer page's alerts panel; the alerts page
and a channel's delivery log. Screenshots land in var/screenshots/alerts-*.png."""

from __future__ import annotations

import os
import re
import time
from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from alerts.models import UpstreamIncident, UserSeen
from msp_dashboard.site24x7 import GroupStatus, Status
from tests.grid_support import make_customer

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
pytest_plugins = ["tests.alerts_support"]

PASSWORD = "a-long-browser-pass-123"
SHOTS = settings.VAR_DIR / "screenshots"
TIMEOUT = 15_000
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
UP, DOWN, TROUBLE, MAINT = Status.UP, Status.DOWN, Status.TROUBLE, Status.MAINTENANCE


def strict_csp(page) -> list[str]:
    complaints: list[str] = []

    def with_policy(route):
        response = route.fetch()
        route.fulfill(
            response=response, headers={**response.headers, "content-security-policy": CSP}
        )

    page.route("**/*", with_policy)
    page.on(
        "console",
        lambda m: complaints.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return complaints


def shot(page, name: str, *, full_page: bool = True) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def _store(customer, pairs, at) -> None:
    from portals.services import customer_store_groups

    groups = [
        GroupStatus(name, name, status, 6, 0 if status in (UP, MAINT) else 2, True)
        for name, status in pairs
    ]
    with time_machine.travel(at, tick=False):
        assert customer_store_groups(customer_id=customer.pk, groups=groups, started=at)


def seed():
    """A grid an MSP's NOC sees on a bad morning (real refreshes stored a minute apart)."""
    now = timezone.now()
    fine = [("Backups", UP), ("Firewalls", UP), ("Mail", UP), ("VPN", UP)]
    acked = make_customer("Apex Clinic Ltd", fetched=None)
    muted = make_customer("Birch Manufacturing AB", fetched=None)
    grouped = make_customer("Cascade Architects GmbH", fetched=None)
    flappy = make_customer("Linden LLC", fetched=None)
    fresh = make_customer("Pinnacle Dental GmbH", fetched=None)
    calm = make_customer("Willow Health Ltd", fetched=None)
    for minutes in (9, 8):
        at = now - timedelta(minutes=minutes)
        _store(acked, [("ERP", DOWN), ("Servers", DOWN)] + fine[:2], at)
        _store(muted, [("Firewalls", DOWN), ("Web shop", TROUBLE), ("Mail", UP)], at)
        _store(grouped, [("File shares", TROUBLE), ("DNS", UP), ("Telephony", UP)], at)
        _store(fresh, [("CRM", UP), ("Email", UP)], at)
        _store(calm, [("CRM", UP), ("Firewalls", UP), ("Web", MAINT)], at)
    for minutes, status in zip((40, 32, 24, 16, 8, 4), (UP, DOWN, UP, DOWN, UP, DOWN), strict=True):
        _store(flappy, [("VPN", status), ("Office network", UP)], now - timedelta(minutes=minutes))
    eu = []
    for name in ("Acme Analytics Group", "Blue Plastics AG", "Harbour Logistics BV"):
        customer = make_customer(name, fetched=now - timedelta(minutes=19), data_centre="EU",
                                 worst=UP, groups=fine)  # fmt: skip
        customer.last_attempt_at = now - timedelta(minutes=1)
        customer.last_error = "Site24x7 server error (HTTP 503)"
        customer.last_error_kind, customer.consecutive_failures = "server", 4
        customer.save()
        eu.append(customer)
    UpstreamIncident.objects.create(
        data_centre="EU", since=now - timedelta(minutes=17), failing=3, considered=3,
        error_kind="server",
    )  # fmt: skip
    return {"acked": acked, "muted": muted, "grouped": grouped, "flappy": flappy,
            "fresh": fresh, "calm": calm, "eu": eu}  # fmt: skip


@pytest.fixture
def noc(django_user_model):
    return django_user_model.objects.create_superuser("noc", password=PASSWORD)


def _wait(page, predicate, what: str, timeout: float = 10.0) -> None:
    """Poll `predicate` while the page's routed requests go on (page.route runs here: a plain
    sleep would hold them)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(50)


def login(page, live_server) -> None:
    page.goto(f"{live_server.url}/login/?next=/")
    page.fill("#id_username", "noc")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#grid-live", timeout=TIMEOUT)


def test_the_grid_with_acknowledgements_mutes_and_the_incident_banner(
    browser, live_server, noc, settings, own_cache
):
    from alerts.services import silence_acknowledge, silence_mute

    settings.GRID_POLL_SECONDS = 1
    world = seed()
    now = timezone.now()
    silence_mute(customer=world["muted"], until=now + timedelta(hours=3),
                 note="Firewall firmware upgrade, ticket 4711", actor=noc)  # fmt: skip
    erp = world["grouped"].groups.get(name="File shares").group_id
    silence_acknowledge(customer=world["grouped"], group_id=erp, note="Disk swap today", actor=noc)

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    complaints = strict_csp(page)
    login(page, live_server)  # the first look: nothing is "new" yet
    # The page records the visit with a POST once shown (the GET changed nothing).
    _wait(page, lambda: UserSeen.objects.filter(user=noc).exists(), "the visit recorded")

    # Apex is acknowledged from its row's menu, in the dialog.
    row = page.locator(f"#c-{world['acked'].pk}")
    row.locator("details.menu summary").click()
    row.get_by_text("Acknowledge…").click()
    page.wait_for_selector("#modal[open] #alerts-form", timeout=TIMEOUT)
    page.fill("#modal input[name=note]", "ISP outage at the clinic, ticket 5120")
    shot(page, "alerts-ack-dialog", full_page=False)
    page.click("#modal button[type=submit]")
    page.wait_for_selector("#modal", state="hidden", timeout=TIMEOUT)
    page.wait_for_selector(f"#c-{world['acked'].pk}.is-acked", timeout=TIMEOUT)
    assert "Acknowledged Apex Clinic Ltd" in page.inner_text("#toast")

    # Pinnacle goes down while the page is open: it stands out at the next poll.
    _store(world["fresh"], [("CRM", DOWN), ("Email", UP)], timezone.now())
    page.wait_for_selector(f"#c-{world['fresh'].pk}.is-new", timeout=TIMEOUT)

    banner = page.locator(".banner-upstream")
    assert banner.count() == 1
    since = timezone.localtime(UpstreamIncident.objects.get().since).strftime("%H:%M")
    assert f"Site24x7 API in data centre EU is failing since {since}" in banner.inner_text()
    order = page.eval_on_selector_all("#rows .row-name", "links => links.map(a => a.textContent)")
    # Unacknowledged problems first (Pinnacle Down, the flapping Linden, the stale EU ones),
    # then the acknowledged and muted ones, then the rest.
    quiet = {"Apex Clinic Ltd", "Birch Manufacturing AB", "Cascade Architects GmbH"}
    first_quiet = min(order.index(name) for name in quiet)
    assert order.index("Pinnacle Dental GmbH") < first_quiet
    assert all(order.index(n) < first_quiet for n in ("Acme Analytics Group", "Linden LLC"))
    assert max(order.index(name) for name in quiet) < order.index("Willow Health Ltd")
    assert page.locator(f"#c-{world['muted'].pk} .b-muted").inner_text().startswith("Muted until")
    assert page.locator(f"#c-{world['flappy'].pk} .b-flapping").count() == 1
    assert page.locator(f"#c-{world['grouped'].pk} .b-acked").inner_text() == (
        "File shares: acked by noc"
    )
    page.mouse.move(0, 0)
    page.evaluate("document.getElementById('toast').hidden = true")
    shot(page, "alerts-grid")

    page.select_option("#avail-filter", "24h")
    page.wait_for_url(re.compile(r"avail=24h"), timeout=TIMEOUT)
    page.wait_for_selector(".b-avail-up, .b-avail-down, .b-avail-trouble", timeout=TIMEOUT)
    shot(page, "alerts-grid-availability", full_page=False)

    wall = browser.new_context(viewport={"width": 1920, "height": 1080})
    wall_page = wall.new_page()
    strict_csp(wall_page)
    login(wall_page, live_server)
    wall_page.goto(f"{live_server.url}/?wall=1")
    wall_page.wait_for_selector(".banner-upstream", timeout=TIMEOUT)
    shot(wall_page, "alerts-wall", full_page=False)
    wall.close()

    dark = browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme="dark")
    dark_page = dark.new_page()
    strict_csp(dark_page)
    login(dark_page, live_server)
    shot(dark_page, "alerts-grid-dark", full_page=False)
    dark.close()
    assert complaints == []
    context.close()


def test_the_customer_panel_the_alerts_page_and_a_delivery_log(
    browser, live_server, noc, listener, eager, own_cache
):
    from alerts.services import channel_send_test
    from tests.alerts_support import channel

    world = seed()
    hook = channel("slack", url=listener.hook(), name="Slack #noc")
    listener.answer(500)
    channel_send_test(channel=hook, actor=noc)
    channel("email", recipients="oncall@msp.example", name="On-call email")

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    complaints = strict_csp(page)
    login(page, live_server)
    page.goto(f"{live_server.url}/customers/{world['flappy'].pk}/")
    page.wait_for_selector("#alerts-panel .alerts-panel", timeout=TIMEOUT)
    assert "Flapping" in page.inner_text("#alerts-panel")
    page.click("#alerts-panel a:has-text('Mute (maintenance)')")
    page.wait_for_selector("#modal[open] #alerts-form", timeout=TIMEOUT)
    page.select_option("#modal select[name=duration]", "4")
    page.fill("#modal input[name=note]", "VPN concentrator replacement")
    page.click("#modal button[type=submit]")
    page.wait_for_selector("#modal", state="hidden", timeout=TIMEOUT)
    page.wait_for_selector("#alerts-panel .silence-mute", timeout=TIMEOUT)
    page.evaluate("document.getElementById('toast').hidden = true")
    shot(page, "alerts-customer")

    page.goto(f"{live_server.url}/alerts/")
    page.wait_for_selector("#channels-h", timeout=TIMEOUT)
    shot(page, "alerts-home")
    page.goto(f"{live_server.url}/alerts/channels/{hook.pk}/")
    attempts = page.inner_text(".deliveries")
    assert "HTTP 500" in attempts and "HTTP 200" in attempts
    shot(page, "alerts-channel")
    page.goto(f"{live_server.url}/availability/?period=24h")
    page.wait_for_selector(".avail-report", timeout=TIMEOUT)
    shot(page, "alerts-availability", full_page=False)
    assert complaints == []
    context.close()
