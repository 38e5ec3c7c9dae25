"""The Django admin under the dashboard's own Content-Security-Policy, in a real browser
(Chromium through Playwright): every page used here renders and its scripts work (the
two-box customer picker, the user form with the scope inline) without one CSP complaint."""

from __future__ import annotations

import os

import pytest

from tests.grid_support import make_customer

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-browser-pass-456"
TIMEOUT = 15_000


def test_the_admin_works_under_the_real_policy(browser, live_server, django_user_model):
    root = django_user_model.objects.create_superuser("root", password=PASSWORD)
    for name in ("Acme", "Globex", "Initech"):
        make_customer(name)
    page = browser.new_context().new_page()
    complaints: list[str] = []
    page.on(
        "console",
        lambda m: complaints.append(m.text) if "Content Security Policy" in m.text else None,
    )
    policies = []
    page.on(
        "response",
        lambda r: (
            policies.append(r.headers.get("content-security-policy", ""))
            if r.request.resource_type == "document"
            else None
        ),
    )

    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name", timeout=TIMEOUT)

    # A customer group: the two-box picker is built by the admin's JavaScript.
    page.goto(f"{live_server.url}/admin/portals/customergroup/add/")
    page.fill("#id_name", "North")
    page.wait_for_selector("#id_customers_add_all", timeout=TIMEOUT)
    page.click("#id_customers_add_all")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success", timeout=TIMEOUT)

    # A user's form with the customer scope inline (and its picker).
    page.goto(f"{live_server.url}/admin/auth/user/{root.pk}/change/")
    page.wait_for_selector("#customer_scope-group, .inline-group", timeout=TIMEOUT)
    for path in (
        "/admin/",
        "/admin/portals/customer/",
        f"/admin/portals/customer/{make_customer('Umbrella').pk}/change/",
        "/admin/tokens/credential/add/",
        "/admin/tokens/auditevent/",
        "/admin/auth/group/",
    ):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_selector("#content", timeout=TIMEOUT)

    from portals.models import CustomerGroup

    assert CustomerGroup.objects.get(name="North").customers.count() == 3
    assert policies and all("frame-ancestors 'none'" in p for p in policies), policies
    assert all("script-src 'self'" in p and "unsafe" not in p for p in policies)
    assert complaints == []
