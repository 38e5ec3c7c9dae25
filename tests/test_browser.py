"""The grid and the customer page in a real browser (Chromium through Playwright) against a live
server and the simulator over real HTTP. Customers come from the real services: a sync from
the simulator's MSP authtoken, a portal authtoken created through the simulated accounts API,
and a refresh. Screenshots land in var/screenshots/ for a human to look at."""

from __future__ import annotations

import os
import re
from datetime import timedelta

import pytest
import requests
import time_machine
from django.conf import settings

from msp_dashboard.site24x7 import STATUS_SEVERITY, Status
from portals.models import Customer
from tests.refresh_support import fault, legacy_customers, sim_customers, sim_post, upstream_of

# Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
# between browser steps are synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-browser-pass-123"
RANK = {s.slug: rank for rank, s in enumerate(STATUS_SEVERITY)}
RANK["stale"] = RANK[Status.UNKNOWN.slug]
SHOTS = settings.VAR_DIR / "screenshots"
TIMEOUT = 15_000
ALL_PROBLEMS = """() => [...document.querySelectorAll('#rows .row')]
    .every(r => r.classList.contains('is-problem'))"""
ROW_IS_DOWN = """pk => { const r = document.getElementById('c-' + pk);
    return r && r.dataset.status === 'down'; }"""


@pytest.fixture(scope="module")
def wall_simulator():
    """A second simulator with 44 customers, for the wall-screen test."""
    from site24x7_simulator import Simulator

    sim = Simulator(customers=44, seed=7, port=0).start()
    yield sim
    sim.stop()


@pytest.fixture
def noc(django_user_model):
    return django_user_model.objects.create_superuser("noc", password=PASSWORD)


def seed(sim, *, stale: int = 1, throttled: int = 1, history: int = 0):
    """Customers synced from the simulator, each with its own authtoken and one refresh; the
    first `stale` customers' refresh fails (HTTP 500) and the next `throttled` get a 429.
    The last `history` customers also get a day of status changes first (real refreshes
    with the clock moved back)."""
    from portals.services import customer_refresh

    customers = legacy_customers(sim)
    for customer in customers[len(customers) - history :]:
        with_history(sim, customer)
    for index, customer in enumerate(customers):
        if index < stale:
            customer_refresh(customer_id=customer.pk)
            fault(sim, customer=customer.portal_id, kind="status", http_status=500, count=1)
        elif index < stale + throttled:
            fault(
                sim,
                customer=customer.portal_id,
                kind="status",
                http_status=429,
                retry_after=600,
                count=1,
            )
        customer_refresh(customer_id=customer.pk)
    return customers


def with_history(sim, customer) -> None:
    """Refreshes 22, 9, 8 and 3 hours ago, with one group going Down, Trouble, then Up."""
    from django.utils import timezone

    from portals.services import customer_refresh

    now = timezone.now()
    group = next(g for g in upstream_of(sim, customer)["groups"] if g["top_group"])
    steps = [(22, None), (9, 0), (8, 2), (3, 1)]
    for hours, status in steps:
        if status is not None:
            sim_post(
                sim,
                "status",
                {"customer": customer.portal_id, "group_id": group["group_id"], "status": status},
            )
        with time_machine.travel(now - timedelta(hours=hours), tick=False):
            assert customer_refresh(customer_id=customer.pk).result == "ok"


def strict_csp(page) -> list[str]:
    """Collect the browser's complaints about the Content-Security-Policy the dashboard sends
    itself (settings.CONTENT_SECURITY_POLICY, issue 6: no inline script or style, no eval)."""
    complaints: list[str] = []
    page.on(
        "console",
        lambda m: complaints.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return complaints


def login(page, live_server, next_path: str = "/"):
    page.goto(f"{live_server.url}/login/?next={next_path}")
    page.fill("#id_username", "noc")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#grid-live, #customer-live", timeout=TIMEOUT)


def row_statuses(page) -> list[str]:
    return page.eval_on_selector_all("#rows .row", "rows => rows.map(r => r.dataset.status)")


def row_names(page) -> list[str]:
    return page.eval_on_selector_all("#rows .row-name", "links => links.map(a => a.textContent)")


def shot(page, name: str, *, full_page: bool = True) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def test_grid_live_worst_first_filters_search_and_a_change_without_reload(
    browser, live_server, simulator, noc, settings
):
    from portals.services import customer_refresh

    settings.GRID_POLL_SECONDS = 1  # the page polls every second: the test need not wait 5

    customers = seed(simulator)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    csp_complaints = strict_csp(page)
    login(page, live_server)

    statuses = row_statuses(page)
    assert len(statuses) == len(customers)
    assert [RANK[s] for s in statuses] == sorted(RANK[s] for s in statuses), statuses
    names = row_names(page)
    stale_row = page.locator(".row.is-stale").first
    assert "Stale" in stale_row.inner_text()
    assert "last refresh failed" in stale_row.inner_text()
    assert page.locator(".badge.b-throttled").count() == 1
    assert re.match(r"^\d+ problems? · MSP dashboard$", page.title())
    assert page.get_attribute("#favicon", "href").startswith("data:image/svg+xml")
    shot(page, "grid-light")

    # Problems only: the rows re-render in place and the URL says so (bookmarkable).
    page.evaluate("window.__noReload = true")
    page.check("#problems")
    page.wait_for_url(re.compile(r"problems=1"), timeout=TIMEOUT)
    page.wait_for_function(ALL_PROBLEMS, timeout=TIMEOUT)
    page.uncheck("#problems")
    page.wait_for_function(
        f"() => document.querySelectorAll('#rows .row').length === {len(customers)}",
        timeout=TIMEOUT,
    )

    # Search by customer name, with the "/" shortcut.
    target = names[-1]
    page.keyboard.press("/")
    page.keyboard.type(target[:8].lower())
    page.wait_for_url(re.compile(r"q="), timeout=TIMEOUT)
    page.wait_for_function(
        "n => [...document.querySelectorAll('#rows .row-name')].map(a => a.textContent).includes(n)"
        " && document.querySelectorAll('#rows .row').length < " + str(len(customers)),
        arg=target,
        timeout=TIMEOUT,
    )
    page.keyboard.press("Escape")
    page.fill("#q", "")
    page.wait_for_function(
        f"() => document.querySelectorAll('#rows .row').length === {len(customers)}",
        timeout=TIMEOUT,
    )

    # A status change in Site24x7 arrives through the poll: no reload.
    best = next(c for c in customers if c.name == names[-1])
    group = next(g for g in upstream_of(simulator, best)["groups"] if g["top_group"])
    sim_post(
        simulator,
        "status",
        {"customer": best.portal_id, "group_id": group["group_id"], "status": 0},
    )
    assert customer_refresh(customer_id=best.pk).result == "ok"
    page.wait_for_function(ROW_IS_DOWN, arg=best.pk, timeout=TIMEOUT)
    assert page.evaluate("window.__noReload") is True
    assert RANK[row_statuses(page)[0]] == RANK["down"]
    assert "updated" in page.inner_text("#last-contact")

    # The server goes away: the page says so instead of freezing; it recovers by itself.
    page.route("**/grid/rows/**", lambda route: route.abort())
    page.wait_for_selector("#conn-banner:not([hidden])", timeout=TIMEOUT)
    assert "Connection to the dashboard lost since" in page.inner_text("#conn-banner")
    assert page.title().startswith("⚠")
    page.unroute("**/grid/rows/**")
    page.wait_for_selector("#conn-banner[hidden]", state="attached", timeout=TIMEOUT)

    # Keyboard: Escape leaves the search box, j moves to the first customer, Enter opens it.
    page.focus("#q")
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert (
        page.evaluate("document.activeElement.id")
        == f"c-{page.eval_on_selector('#rows .row:nth-child(2)', 'r => r.dataset.customer')}-a"
    )
    page.keyboard.press("Enter")
    page.wait_for_selector("#customer-live", timeout=TIMEOUT)
    assert csp_complaints == []  # everything above worked under a strict CSP
    context.close()

    dark = browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme="dark")
    page = dark.new_page()
    login(page, live_server)
    shot(page, "grid-dark")
    dark.close()

    phone = browser.new_context(viewport={"width": 360, "height": 780}, device_scale_factor=2)
    page = phone.new_page()
    page.goto(f"{live_server.url}/login/")
    shot(page, "login-phone")
    login(page, live_server)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    shot(page, "grid-phone")
    phone.close()


def test_tokens_from_the_grid_and_the_customer_page(browser, live_server, simulator, noc):
    from tokens.models import Credential, CredentialState

    customers = seed(simulator, stale=0, throttled=0, history=1)
    customer = customers[-1]
    login_data = upstream_of(simulator, customer)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    csp_complaints = strict_csp(page)
    login(page, live_server)
    page.evaluate("window.__noReload = true")

    row = page.locator(f"#c-{customer.pk}")
    row.locator("details.menu summary").click()
    row.get_by_text("New token…").click()
    page.wait_for_selector("#modal[open] input[type=password]", timeout=TIMEOUT)
    page.click("#modal a:has-text('Cancel')")  # closes the dialog, stays on the grid
    page.wait_for_selector("#modal", state="hidden", timeout=TIMEOUT)
    row.locator("details.menu summary").click()
    row.get_by_text("New token…").click()
    page.wait_for_selector("#modal[open] input[type=password]", timeout=TIMEOUT)

    wrong = "Wrong-Password-Never-Echoed-42"
    page.fill("#modal input[type=email]", login_data["email"])
    page.fill("#modal input[type=password]", wrong)
    page.click("#modal button[type=submit]")
    page.wait_for_selector("#modal .error", timeout=TIMEOUT)
    assert page.input_value("#modal input[type=password]") == ""
    assert wrong not in page.content()
    shot(page, "token-form-error", full_page=False)

    page.fill("#modal input[type=password]", login_data["password"])
    page.click("#modal button[type=submit]")
    page.wait_for_selector("#modal", state="hidden", timeout=TIMEOUT)
    page.wait_for_selector("#toast:not([hidden])", timeout=TIMEOUT)
    assert "created" in page.inner_text("#toast")
    newest = Credential.objects.filter(customer=customer).order_by("-created_at", "-id").first()
    assert newest.state == CredentialState.ACTIVE
    assert newest.secret_last4 not in ("", None)

    # The rows reloaded: the menu offers to revoke the new token.
    page.wait_for_selector(
        f"#c-{customer.pk}[data-masked='{newest.masked_secret}']", state="attached", timeout=TIMEOUT
    )
    row = page.locator(f"#c-{customer.pk}")
    row.locator("details.menu summary").click()
    row.get_by_text(f"Revoke token {newest.masked_secret}…").click()
    page.wait_for_selector("#modal[open] button.btn-danger", timeout=TIMEOUT)
    page.click("#modal button.btn-danger")
    page.wait_for_selector("#modal", state="hidden", timeout=TIMEOUT)
    newest.refresh_from_db()
    assert newest.state == CredentialState.REVOKED
    assert page.evaluate("window.__noReload") is True

    # The customer page: groups, 24-hour timeline, credentials (masked), Site24x7 link.
    page.click(f"#c-{customer.pk}-a")
    page.wait_for_selector("#customer-live", timeout=TIMEOUT)
    assert customer.name in page.inner_text("h1")
    assert page.locator("table.groups tbody tr").count() >= 1
    assert page.locator(".tl-bar").count() >= 2
    assert page.locator(".masked").count() >= 2
    assert "site24x7.com" in page.get_attribute("a[target=_blank]", "href")
    shot(page, "customer-page")
    assert csp_complaints == []
    context.close()


def test_wall_screen_fits_44_customers_on_1080p(
    browser, live_server, wall_simulator, settings, noc
):
    requests.post(f"{wall_simulator.url}/_sim/reset", timeout=5).raise_for_status()
    settings.SITE24X7_API_URL = wall_simulator.url
    settings.SITE24X7_ACCOUNTS_URL = wall_simulator.url
    customers = seed(wall_simulator, stale=2, throttled=0)
    assert len(customers) == len(sim_customers(wall_simulator)) == 44

    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    login(page, live_server, next_path="/?wall=1")
    assert page.locator("#rows .row").count() == 44
    assert page.locator(".topbar").count() == 0
    shot(page, "wall-1920x1080")
    assert page.evaluate("document.documentElement.scrollHeight") <= 1080
    context.close()


WATCH_POLLS = """() => {
  window.__cls = 0;
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
  }).observe({type: 'layout-shift', buffered: false});
  window.__polls = [];
  document.addEventListener('htmx:afterRequest', e => {
    if (e.detail.elt.id !== 'grid-live') return;
    window.__polls.push(e.detail.xhr.status);
    if (e.detail.xhr.responseText.includes(' data-order="')) window.__deltas += 1;
  });
  window.__deltas = 0;
  document.querySelectorAll('#rows .row').forEach(r => { r.__before = true; });
}"""
ON_SCREEN = """() => [...document.querySelectorAll('#rows .row')].find(r => {
  const box = r.getBoundingClientRect(); return box.top > 60 && box.bottom < innerHeight; })
  .dataset.customer"""


def test_a_poll_replaces_only_the_changed_row_without_flicker_or_scroll_jump(
    browser, live_server, simulator, noc, settings
):
    """Scrolled to the middle, a refresh lands and three polls come: the changed row updates in
    place (the poll brings only that row), every other row is the very same element, nothing
    moves (scrollY, layout shifts), and the polls with nothing new are answered 204."""
    from portals.services import customer_refresh

    settings.GRID_POLL_SECONDS = 1
    # A cache of this test's own: what a page holds (for the delta) must not be wiped by
    # another test run sharing var/cache while this one runs.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "g"}
    }
    seed(simulator, stale=0, throttled=0)
    context = browser.new_context(viewport={"width": 1280, "height": 480})
    page = context.new_page()
    csp_complaints = strict_csp(page)
    login(page, live_server, next_path="/?sort=name")  # by name: a new status moves no row
    page.evaluate("window.scrollTo(0, (document.documentElement.scrollHeight - innerHeight) / 2)")
    page.wait_for_timeout(300)
    y = page.evaluate("window.scrollY")
    assert y > 0
    page.evaluate(WATCH_POLLS)

    pk = int(page.evaluate(ON_SCREEN))
    customer = Customer.objects.get(pk=pk)
    group = next(g for g in upstream_of(simulator, customer)["groups"] if g["top_group"])
    status = 2 if group["status"] != 2 else 3  # Trouble, or Critical if it is Trouble
    change = {"customer": customer.portal_id, "group_id": group["group_id"], "status": status}
    sim_post(simulator, "status", change)
    assert customer_refresh(customer_id=pk).result == "ok"
    cell = f"#c-{pk} li.cell[data-g='{group['group_id']}']"
    slug = {2: "trouble", 3: "critical"}[status]
    page.wait_for_selector(f"{cell}.s-{slug}", state="attached", timeout=TIMEOUT)
    polls = len(page.evaluate("window.__polls"))
    page.wait_for_function(f"() => window.__polls.length >= {polls + 3}", timeout=TIMEOUT)

    assert page.evaluate("window.scrollY") == y
    assert page.evaluate("window.__cls") == 0
    replaced = page.evaluate(
        "[...document.querySelectorAll('#rows .row')].filter(r => !r.__before)"
        ".map(r => Number(r.dataset.customer))"
    )
    assert replaced == [pk]
    statuses = page.evaluate("window.__polls")
    assert 200 in statuses and statuses[-1] == 204, statuses
    assert page.evaluate("window.__deltas") >= 1  # only the changed row came over the wire
    assert csp_complaints == []
    shot(page, "grid-after-polls", full_page=False)
    context.close()
