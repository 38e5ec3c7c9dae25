"""The customer page: groups and subgroups, the 24-hour timeline per group, the refresh
outcome, credentials (masked) with their buttons, the Site24x7 link, and a query count that
does not grow with the number of groups or status changes."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from msp_dashboard.site24x7 import Status
from portals.detail import WIDTH, build_timelines
from portals.models import MonitorGroup, StatusChange
from tests.grid_support import add_token, make_customer
from tests.roles_support import VIEWER, make_user
from tokens.models import AuditAction, Credential, CredentialKind, CredentialOrigin
from tokens.services import audit_record

pytestmark = pytest.mark.django_db


def page_of(client, customer) -> str:
    response = client.get(f"/customers/{customer.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def change(customer, group_id, group_name, before, after, hours_ago):
    return StatusChange.objects.create(
        customer=customer,
        group_id=group_id,
        group_name=group_name,
        from_status=None if before is None else int(before),
        to_status=int(after),
        at=timezone.now() - timedelta(hours=hours_ago),
    )


def test_the_customer_page_needs_a_login_and_an_existing_customer(client, admin_client):
    customer = make_customer("Private")
    response = client.get(f"/customers/{customer.pk}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
    assert admin_client.get("/customers/999999/").status_code == 404


def test_groups_and_subgroups_with_status_word_icon_and_counts(admin_client):
    customer = make_customer(
        "Groups",
        worst=Status.DOWN,
        groups=[("Websites", Status.DOWN), ("Email", Status.UP)],
        subgroups=[("Websites - EU", Status.TROUBLE)],
    )
    html = page_of(admin_client, customer)
    web = MonitorGroup.objects.get(customer=customer, name="Websites")
    row = html[html.index(f'id="g-{web.group_id}"') :]
    row = row[: row.index("</tr>")]
    assert "#i-down" in row and ">Down</span>" in row
    assert '<td class="num">4</td><td class="num strong">2</td>' in row
    assert "Subgroups" in html
    assert "Websites - EU" in html
    assert "2 top, 1 subgroups" in html.replace("</span>", "")


def test_refresh_outcome_is_shown(admin_client, settings):
    settings.TIME_ZONE = "UTC"
    now = timezone.now()
    until = now + timedelta(minutes=20)
    customer = make_customer(
        "Outcome",
        fetched=now - timedelta(minutes=3),
        last_attempt_at=now,
        last_error="Site24x7 server error (HTTP 500)",
        last_error_kind="server",
        consecutive_failures=3,
        last_duration=timedelta(milliseconds=420),
        throttled_until=until,
        paused_until=until,
        breaker_trips=2,
    )
    html = page_of(admin_client, customer)
    assert "<b>server</b>: Site24x7 server error (HTTP 500)" in html
    assert '<dt>Failures in a row</dt><dd class="strong">3</dd>' in html
    assert "420 ms" in html
    assert f"{until:%H:%M:%S} UTC" in html
    assert "circuit breaker: upstream failing" in html
    assert "<dt>Breaker trips</dt><dd>2</dd>" in html
    # A failed last refresh makes the data stale: never shown as its last status.
    assert "Stale: last refresh failed: Site24x7 server error (HTTP 500)" in html
    assert "<title>Stale · Outcome · MSP dashboard</title>" in html


def test_an_inactive_customer_still_has_its_page(admin_client):
    customer = make_customer("Gone", is_active=False, deactivated_at=timezone.now())
    assert "Inactive: gone from Site24x7" in page_of(admin_client, customer)


def test_timeline_per_group_and_the_list_of_changes(admin_client):
    customer = make_customer("History", worst=Status.UP, groups=[("Web", Status.UP)])
    web = MonitorGroup.objects.get(customer=customer)
    change(customer, web.group_id, "Web", Status.UP, Status.DOWN, 12)
    change(customer, web.group_id, "Web", Status.DOWN, Status.UP, 6)
    change(customer, "", "", Status.UP, Status.DOWN, 12)
    change(customer, "", "", Status.DOWN, Status.UP, 6)
    change(customer, "gone-1", "Old group", None, Status.TROUBLE, 3)
    change(customer, web.group_id, "Web", Status.UP, Status.DOWN, 30)  # outside the window
    html = page_of(admin_client, customer)
    bars = re.findall(r'<svg class="tl-bar".*?</svg>', html, re.S)
    assert len(bars) == 3  # the customer, Web, and the removed group
    rects = re.findall(r'<rect class="s-([a-z-]+)" x="([\d.]+)" y="0" width="([\d.]+)"', bars[1])
    assert [(s, round(float(x)), round(float(w))) for s, x, w in rects] == [
        ("up", 0, 720), ("down", 720, 360), ("up", 1080, 360),
    ]  # fmt: skip
    # A group first seen 3 hours ago has no bar before that.
    removed = re.findall(r'<rect class="s-([a-z-]+)" x="([\d.]+)"', bars[2])
    assert [(s, round(float(x))) for s, x in removed] == [("trouble", 1260)]
    assert "Old group" in html and "(removed)" in html
    assert "<title>Down " in bars[1]  # hover says which status, from when to when
    table = html[html.index('<table class="list changes">') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == 5 + 1  # header + five changes in 24 hours, newest first
    assert table.index("Old group") < table.index("Web")


def test_build_timelines_is_pure_arithmetic():
    class Row:
        def __init__(self, group_id, before, after, at, pk):
            self.group_id, self.group_name = group_id, "G"
            self.from_status, self.to_status, self.at, self.pk = before, after, at, pk

    class Customer:
        worst_status = int(Status.CRITICAL)

    class Group:
        group_id, name, status = "g", "G", int(Status.CRITICAL)

    now = timezone.now()
    changes = [Row("g", 1, 3, now - timedelta(hours=1), 1)]
    lines = build_timelines(Customer(), [Group()], changes, now)
    assert [t.name for t in lines] == ["Customer (worst status)", "G"]
    assert [(s.status, round(s.x), round(s.width)) for s in lines[1].segments] == [
        (Status.UP, 0, WIDTH - 60),
        (Status.CRITICAL, WIDTH - 60, 60),
    ]
    assert lines[0].segments[0].status == Status.CRITICAL  # no change: the current status


def test_a_stale_customer_gets_a_hatched_no_data_stretch(admin_client):
    customer = make_customer("Old", fetched=timezone.now() - timedelta(hours=6))
    html = page_of(admin_client, customer)
    assert re.search(r'<rect class="nodata" x="1080\.\d+"', html)
    assert "No fresh data since" in html


def test_credentials_are_masked_with_their_buttons(admin_client):
    customer = make_customer("Keys", token=None)
    active = add_token(customer, last4="k3y9")
    Credential.objects.filter(pk=active.pk).update(secret_ciphertext="v1:k:CANARY-CIPHERTEXT")
    invalid = add_token(customer, state="invalid", last4="bad1")
    msp = Credential.objects.create(
        kind=CredentialKind.MSP_AUTHTOKEN,
        secret_ciphertext="v1:k:x",
        secret_last4="msp4",
        origin=CredentialOrigin.IMPORTED,
        label="MSP US",
    )
    customer.msp_credential = msp
    customer.save(update_fields=["msp_credential"])
    audit_record(action=AuditAction.CREDENTIAL_IMPORT, customer=customer, credential=active)
    html = page_of(admin_client, customer)
    assert "CANARY-CIPHERTEXT" not in html
    assert "••••k3y9" in html and "••••bad1" in html and "••••msp4" in html
    assert f'href="/customers/{customer.pk}/credentials/new"' in html
    assert f'href="/customers/{customer.pk}/credentials/import"' in html
    assert f'hx-get="/credentials/{active.pk}/revoke"' in html
    assert f'action="/credentials/{active.pk}/test"' in html
    assert f'hx-get="/credentials/{invalid.pk}/forget"' in html
    # The MSP identity serves every customer: no revoke button on one customer's page.
    assert f"/credentials/{msp.pk}/revoke" not in html
    assert "the MSP authtoken that lists this customer" in html
    assert "Credential imported" in html  # the customer's slice of the audit trail


def test_buttons_follow_permissions(client, django_user_model):
    customer = make_customer("Perms")
    viewer = make_user("viewer", VIEWER)
    client.force_login(viewer)
    html = page_of(client, customer)
    assert "Refresh now" not in html
    assert "/credentials/new" not in html
    assert "Open in Site24x7" in html


def test_site24x7_link_follows_the_data_centre(admin_client):
    eu = make_customer("Euro", data_centre="EU")
    html = page_of(admin_client, eu)
    assert 'href="https://www.site24x7.eu" target="_blank" rel="noopener noreferrer"' in html


def test_the_page_polls_itself_and_the_poll_renders_the_same_section(admin_client):
    customer = make_customer("Live")
    html = page_of(admin_client, customer)
    assert f'hx-get="/customers/{customer.pk}/" hx-select="#customer-live"' in html
    partial = admin_client.get(f"/customers/{customer.pk}/", HTTP_HX_REQUEST="true")
    assert 'id="customer-live"' in partial.content.decode()
    assert "no-store" in partial["Cache-Control"]


def test_query_count_does_not_grow_with_groups_or_history(admin_client):
    small = make_customer("Small", groups=[("A", Status.UP)])
    change(small, "", "", None, Status.UP, 1)
    big = make_customer("Big", groups=[(f"G{i}", Status(i % 2)) for i in range(60)])
    groups = list(MonitorGroup.objects.filter(customer=big))
    with time_machine.travel(timezone.now() - timedelta(hours=1)):
        StatusChange.objects.bulk_create(
            StatusChange(
                customer=big,
                group_id=g.group_id,
                group_name=g.name,
                from_status=1,
                to_status=0,
                at=timezone.now() - timedelta(minutes=i),
            )
            for i, g in enumerate(groups * 8)
        )
    for _ in range(5):
        add_token(big)

    def count(customer):
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(f"/customers/{customer.pk}/").status_code == 200
        return len(ctx.captured_queries)

    # user, customer, groups, changes, credentials, audit (the session comes from the cache)
    assert count(small) == count(big) == 6  # PERF-01: at most 6
