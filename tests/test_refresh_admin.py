"""Operators' tools: the read-mostly admin, `manage.py refresh_customers`, and the soft time
limit inside a refresh."""

import io

import pytest
import responses
from celery.exceptions import SoftTimeLimitExceeded
from django.core.management import CommandError, call_command
from django.urls import reverse

from portals.models import AuthGeneration, Customer
from portals.services import RefreshResult, customer_refresh
from tokens.models import AuditAction, AuditEvent, CredentialKind
from tokens.services import credential_import

from .refresh_support import isolate_file_cache, legacy_customers

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_cache(settings, tmp_path):
    isolate_file_cache(settings, tmp_path)


def test_admin_lists_filters_and_shows_customers_read_only(admin_client, simulator):
    customer = legacy_customers(simulator, count=1)[0]
    customer_refresh(customer_id=customer.pk)
    changelist = reverse("admin:portals_customer_changelist")

    assert admin_client.get(changelist).status_code == 200
    assert admin_client.get(changelist, {"is_active__exact": "1", "q": "a"}).status_code == 200
    page = admin_client.get(reverse("admin:portals_customer_change", args=[customer.pk]))
    assert page.status_code == 200 and b'name="name"' not in page.content  # read-only
    assert admin_client.get(reverse("admin:portals_customer_add")).status_code == 403
    for model in ("monitorgroup", "statuschange"):
        assert admin_client.get(reverse(f"admin:portals_{model}_changelist")).status_code == 200


def test_admin_refresh_now_action_queues(
    admin_client, simulator, django_capture_on_commit_callbacks
):
    customer = legacy_customers(simulator, count=1)[0]
    changelist = reverse("admin:portals_customer_changelist")
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(
            changelist, {"action": "refresh_now", "_selected_action": [customer.pk]}, follow=True
        )
    assert response.status_code == 200 and len(callbacks) == 1
    assert f"Refresh of {customer.name} queued." in response.content.decode()


def test_admin_delete_is_audited(admin_client, simulator):
    customer = legacy_customers(simulator, count=1)[0]
    url = reverse("admin:portals_customer_delete", args=[customer.pk])
    admin_client.post(url, {"post": "yes"})
    assert not Customer.objects.filter(pk=customer.pk).exists()
    event = AuditEvent.objects.get(action=AuditAction.CUSTOMER_DELETE)
    assert event.customer_name == customer.name and event.actor_name == "admin"


@pytest.mark.django_db(transaction=True)
def test_refresh_command_prints_one_line_per_customer(simulator):
    customers = legacy_customers(simulator, count=3)
    out = io.StringIO()

    call_command("refresh_customers", "--all", stdout=out)

    lines = out.getvalue().splitlines()
    assert len(lines) == Customer.objects.filter(is_active=True).count() == 8
    for customer in customers:
        line = next(li for li in lines if li.startswith(customer.name + "\t"))
        name, result, duration, groups, worst = line.split("\t")
        assert result == "ok" and duration.endswith("s")
        assert groups == f"groups={customer.groups.count()}" and worst.startswith("worst=")
    assert sum("skipped (no credential)" in li for li in lines) == 5


def test_refresh_command_by_name_or_id(simulator):
    customer = legacy_customers(simulator, count=1)[0]
    out = io.StringIO()
    call_command(
        "refresh_customers", "--customer", customer.name.upper(), "--customer", str(customer.pk),
        "--workers", "1", stdout=out,
    )  # fmt: skip
    assert [line.split("\t")[1] for line in out.getvalue().splitlines()] == ["ok", "ok"]
    with pytest.raises(CommandError):
        call_command("refresh_customers", "--customer", "nobody")
    with pytest.raises(CommandError):
        call_command("refresh_customers")


@responses.activate
def test_soft_time_limit_inside_a_refresh_is_a_timeout(settings):
    """Celery raises SoftTimeLimitExceeded wherever the task is (here: waiting for Site24x7);
    it is a transient failure recorded as "timeout". `responses` stands in for the wait."""
    settings.SITE24X7_API_URL = settings.SITE24X7_ACCOUNTS_URL = ""
    customer = Customer.objects.create(
        name="Slow", auth_generation=AuthGeneration.LEGACY, portal_id="1", zaid="c2xvdw=="
    )
    credential_import(kind=CredentialKind.PORTAL_AUTHTOKEN, secret="a" * 40, customer=customer)
    responses.get(
        "https://www.site24x7.com/api/monitor_groups/status", body=SoftTimeLimitExceeded()
    )

    outcome = customer_refresh(customer_id=customer.pk)

    assert (outcome.result, outcome.reason) == (RefreshResult.FAILED, "timeout")
    assert outcome.retry_in is not None
    customer.refresh_from_db()
    assert customer.last_error_kind == "timeout" and customer.lease_until is None
