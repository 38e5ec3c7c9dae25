"""Customer discovery (issue 3): sync with an MSP authtoken or an OAuth identity, over real HTTP
against the simulator."""

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from msp_dashboard.site24x7 import AuthError
from portals.models import AuthGeneration, Customer
from portals.services import customer_sync, customers_sync_all
from portals.tasks import sync_customers
from tokens.models import AuditAction, AuditEvent, CredentialKind, CredentialState
from tokens.services import credential_import

from .refresh_support import (
    calls,
    fault,
    isolate_file_cache,
    msp_authtoken_credential,
    oauth_credential,
    sim_customers,
    sim_post,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _own_cache(settings, tmp_path):
    isolate_file_cache(settings, tmp_path)


WRITES = ("INSERT", "UPDATE", "DELETE")


@pytest.fixture(scope="module")
def smaller_simulator():
    """The same seed with fewer customers: the first six of the eight, two gone."""
    from site24x7_simulator import Simulator

    sim = Simulator(customers=6, seed=7, port=0).start()
    yield sim
    sim.stop()


def test_legacy_sync_creates_customers_from_portals(simulator):
    credential = msp_authtoken_credential(simulator)
    result = customer_sync(credential=credential)

    upstream = {c["portal_id"]: c for c in sim_customers(simulator)}
    assert result.created == len(upstream) == 8
    assert (result.updated, result.deactivated, result.reactivated) == (0, 0, 0)
    for customer in Customer.objects.all():
        portal = upstream[customer.portal_id]
        assert (customer.name, customer.zaid) == (portal["name"], portal["zaid"])
        assert customer.auth_generation == AuthGeneration.LEGACY
        assert customer.msp_credential_id == credential.pk
        assert customer.data_centre == credential.data_centre
        assert customer.is_active
    event = AuditEvent.objects.get(action=AuditAction.CUSTOMER_SYNC)
    assert event.detail.startswith("created=8 ")
    assert event.credential_fingerprint == credential.fingerprint


def test_oauth_sync_creates_customers_from_the_msp_list(simulator):
    credential = oauth_credential(simulator)
    result = customer_sync(credential=credential)

    upstream = {c["zaaid"]: c for c in sim_customers(simulator)}
    assert result.created == 8
    for customer in Customer.objects.all():
        assert customer.name == upstream[customer.zaaid]["name"]
        assert customer.user_id == upstream[customer.zaaid]["user_id"]
        assert customer.auth_generation == AuthGeneration.OAUTH
        assert customer.msp_credential_id == credential.pk


@pytest.mark.parametrize("make_credential", [msp_authtoken_credential, oauth_credential])
def test_second_sync_writes_nothing(simulator, make_credential):
    credential = make_credential(simulator)
    customer_sync(credential=credential)
    before = {c.pk: (c.name, c.discovered_at) for c in Customer.objects.all()}
    audits = AuditEvent.objects.count()

    with CaptureQueriesContext(connection) as queries:
        result = customer_sync(credential=credential)

    assert (result.created, result.updated, result.unchanged) == (0, 0, 8)
    assert not [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(WRITES)]
    assert len(queries) <= 2
    assert {c.pk: (c.name, c.discovered_at) for c in Customer.objects.all()} == before
    assert AuditEvent.objects.count() == audits


def test_gone_customers_are_deactivated_then_reactivated(simulator, smaller_simulator, settings):
    credential = msp_authtoken_credential(simulator)
    customer_sync(credential=credential)
    all_eight = set(Customer.objects.values_list("portal_id", flat=True))

    settings.SITE24X7_API_URL = smaller_simulator.url
    result = customer_sync(credential=credential)
    remaining = {c["portal_id"] for c in sim_customers(smaller_simulator)}
    gone = Customer.objects.filter(is_active=False)
    assert result.deactivated == 2 and result.unchanged == 6
    assert set(gone.values_list("portal_id", flat=True)) == all_eight - remaining
    assert all(c.deactivated_at for c in gone)
    assert Customer.objects.count() == 8  # never deleted

    settings.SITE24X7_API_URL = simulator.url
    result = customer_sync(credential=credential)
    assert (result.reactivated, result.deactivated, result.unchanged) == (2, 0, 6)
    assert not Customer.objects.filter(is_active=False).exists()
    assert not Customer.objects.exclude(deactivated_at=None).exists()


def test_a_renamed_customer_is_updated(simulator):
    credential = msp_authtoken_credential(simulator)
    customer_sync(credential=credential)
    customer = Customer.objects.first()
    Customer.objects.filter(pk=customer.pk).update(name="Old name")

    result = customer_sync(credential=credential)

    assert (result.updated, result.unchanged) == (1, 7)
    customer.refresh_from_db()
    assert customer.name != "Old name"


def test_rejected_msp_authtoken_marks_the_credential_invalid(simulator):
    credential = credential_import(
        kind=CredentialKind.MSP_AUTHTOKEN, secret="0123456789abcdef0123456789abcdef"
    )
    with pytest.raises(AuthError):
        customer_sync(credential=credential)

    credential.refresh_from_db()
    assert credential.state == CredentialState.INVALID
    assert AuditEvent.objects.filter(
        action=AuditAction.CREDENTIAL_INVALID, credential_fingerprint=credential.fingerprint
    ).exists()
    assert not Customer.objects.exists()


def test_oauth_sync_replaces_a_rejected_access_token_once(simulator):
    credential = oauth_credential(simulator)
    sim_post(simulator, "oauth", {"expire_access_tokens": True})
    sim_post(simulator, "counters/reset")

    result = customer_sync(credential=credential)

    assert result.created == 8
    assert calls(simulator, "oauth_token") == 1
    assert calls(simulator, "short_customers") == 2
    credential.refresh_from_db()
    assert credential.state == CredentialState.ACTIVE


def test_sync_all_goes_on_after_a_failing_credential(simulator):
    good = msp_authtoken_credential(simulator)
    bad = credential_import(
        kind=CredentialKind.MSP_AUTHTOKEN, secret="ffffffffffffffffffffffffffffffff"
    )
    reports = {r.credential_id: r for r in customers_sync_all()}

    assert reports[good.pk].result.created == 8
    assert reports[bad.pk].result is None and "refused" in reports[bad.pk].error
    bad.refresh_from_db()
    assert bad.state == CredentialState.INVALID
    # The invalid credential is no longer tried.
    assert [r.credential_id for r in customers_sync_all()] == [good.pk]


def test_transient_failure_keeps_customers_and_the_credential(simulator):
    credential = msp_authtoken_credential(simulator)
    customer_sync(credential=credential)
    fault(simulator, kind="status", http_status=503, endpoint="portals")

    report = customers_sync_all()[0]

    assert report.result is None and "503" in report.error
    assert Customer.objects.filter(is_active=True).count() == 8
    credential.refresh_from_db()
    assert credential.state == CredentialState.ACTIVE


def test_sync_command_and_task_print_counts(simulator):
    credential = msp_authtoken_credential(simulator)
    out = io.StringIO()
    call_command("sync_customers", stdout=out)
    assert f"credential {credential.pk} (MSP): created=8 " in out.getvalue()

    assert sync_customers.run() == [f"{credential.pk}: created=0 updated=0 deactivated=0 "
                                    "reactivated=0 unchanged=8"]  # fmt: skip


def test_sync_command_without_credentials():
    out = io.StringIO()
    call_command("sync_customers", stdout=out)
    assert "No active MSP credential" in out.getvalue()
