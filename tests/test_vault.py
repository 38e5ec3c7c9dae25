"""Credential services against the simulator over real HTTP: create, import, revoke, forget,
the 10-token cap, upstream errors, OAuth connect/mint/disconnect, test connection."""

import pytest
import requests
from django.core.cache import cache

from msp_dashboard.site24x7 import Site24x7Client
from tests.test_tokens_support import sim_calls, sim_get, sim_post, sim_tokens
from tokens import crypto, errors, services
from tokens.models import AuditEvent, Credential, CredentialKind, CredentialState

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.test_tokens_support"]
IP = "203.0.113.9"


def _create(customer, sim_customer, manager=None, **kwargs):
    return services.credential_create(
        customer=customer,
        email=kwargs.pop("email", sim_customer["email"]),
        password=kwargs.pop("password", sim_customer["password"]),
        label=kwargs.pop("label", "primary"),
        actor=manager,
        ip=IP,
    )


def _paste(customer, secret, **kwargs):
    return services.credential_paste(
        kind=CredentialKind.PORTAL_AUTHTOKEN, secret=secret, customer=customer, **kwargs
    )


def _last_audit():
    return AuditEvent.objects.order_by("-id").first()


# --- create ---------------------------------------------------------------------------------


def test_create_stores_the_upstream_token_encrypted_and_audits(
    simulator, customer, sim_customer, manager
):
    credential = _create(customer, sim_customer, manager)

    upstream = sim_tokens(simulator, sim_customer["zaaid"])
    assert len(upstream) == 1
    assert services.credential_secret(credential) == upstream[0]
    assert upstream[0] not in credential.secret_ciphertext
    assert credential.secret_ciphertext.startswith("v1:")
    assert credential.secret_last4 == upstream[0][-4:]
    assert credential.kind == CredentialKind.PORTAL_AUTHTOKEN
    assert credential.origin == "created"
    assert credential.created_by == manager
    assert services.credential_for_customer(customer) == credential
    event = _last_audit()
    assert (event.action, event.outcome) == ("credential.create", "success")
    assert (event.actor_name, str(event.source_ip)) == ("manager", IP)
    assert (event.customer_id, event.customer_name) == (customer.pk, customer.name)
    assert event.credential_fingerprint == credential.fingerprint


@pytest.mark.parametrize(
    ("email", "password"),
    [(None, "not-the-password-123"), ("nobody@example.invalid", None)],
    ids=["wrong-password", "unknown-user"],
)
def test_create_with_a_bad_login_says_so_and_audits(
    simulator, customer, sim_customer, manager, email, password
):
    email = email or sim_customer["email"]
    password = password or sim_customer["password"]
    with pytest.raises(errors.CredentialError) as info:
        _create(customer, sim_customer, manager, email=email, password=password)

    assert info.value.code == errors.LOGIN
    assert "wrong email or password" in str(info.value)
    assert password not in str(info.value)
    assert not Credential.objects.exists()
    event = _last_audit()
    assert (event.action, event.outcome) == ("credential.create", "failure")
    assert event.detail.startswith("login:")
    assert email in event.detail
    assert password not in event.detail


def test_local_cap_refuses_before_calling_upstream(simulator, customer, sim_customer, manager):
    for n in range(9):
        _paste(customer, f"{sim_customer['portal_id']}.0000000000{n}.abcdef0123456789")
    invalid = _paste(customer, f"{sim_customer['portal_id']}.99999999999.abcdef0123456789")
    services.credential_mark_invalid(credential=invalid, reason="test")
    sim_post(simulator, "counters/reset")

    assert services.credential_live_count(customer=customer) == 10
    with pytest.raises(errors.CredentialError) as info:
        _create(customer, sim_customer, manager)

    assert info.value.code == errors.CAP
    assert "10 live authtokens" in str(info.value)
    assert sim_calls(simulator, "authtoken_create") == 0
    assert _last_audit().detail == "cap"


def test_upstream_cap_when_the_local_count_is_out_of_sync(simulator, customer, sim_customer):
    outside = Site24x7Client("US", api_url=simulator.url, accounts_url=simulator.url)
    for _ in range(10):  # created elsewhere: the dashboard does not know them
        outside.create_portal_authtoken(
            portal_id=sim_customer["portal_id"],
            email=sim_customer["email"],
            password=sim_customer["password"],
        )

    with pytest.raises(errors.CredentialError) as info:
        _create(customer, sim_customer)

    assert info.value.code == errors.UPSTREAM_CAP
    assert "Site24x7 refused" in str(info.value)
    assert not Credential.objects.exists()


def test_create_while_upstream_fails_5xx(simulator, customer, sim_customer):
    sim_post(simulator, "faults", {"endpoint": "authtoken_create", "kind": "status"})

    with pytest.raises(errors.CredentialError) as info:
        _create(customer, sim_customer)

    assert info.value.code == errors.UNREACHABLE
    assert "try again" in str(info.value)
    assert sim_customer["password"] not in str(info.value)
    assert not Credential.objects.exists()


def test_create_while_upstream_hangs_ends_at_the_read_timeout(
    simulator, settings, customer, sim_customer
):
    settings.SITE24X7_READ_TIMEOUT = 0.5
    sim_post(simulator, "faults", {"endpoint": "authtoken_create", "kind": "hang", "hang_s": 3})

    with pytest.raises(errors.CredentialError) as info:
        _create(customer, sim_customer)

    assert info.value.code == errors.UNREACHABLE
    assert "a token may have been created anyway" in str(info.value)
    assert not Credential.objects.exists()


def test_create_refuses_an_oauth_customer(simulator, customer, sim_customer):
    customer.auth_generation = "oauth"
    customer.save()
    with pytest.raises(errors.CredentialError) as info:
        _create(customer, sim_customer)
    assert info.value.code == errors.STATE
    assert sim_calls(simulator, "authtoken_create") == 0


def test_a_second_token_rotates_then_the_old_one_is_revoked(simulator, customer, sim_customer):
    old = _create(customer, sim_customer, label="old")
    new = _create(customer, sim_customer, label="new")
    assert services.credential_for_customer(customer) == new

    services.credential_revoke(credential=old)

    assert services.credential_for_customer(customer) == new
    assert sim_tokens(simulator, sim_customer["zaaid"]) == [services.credential_secret(new)]


# --- import ---------------------------------------------------------------------------------


def test_import_portal_token_and_refuse_a_duplicate(simulator, customer, manager):
    secret = "12353635607.13213743991.0123456789abcdef"
    credential = _paste(customer, secret, label="pasted", actor=manager, ip=IP)
    assert credential.origin == "imported"
    assert services.credential_secret(credential) == secret
    assert (_last_audit().action, _last_audit().outcome) == ("credential.import", "success")

    with pytest.raises(errors.CredentialError) as info:
        _paste(customer, f"  {secret} ")
    assert info.value.code == errors.DUPLICATE
    assert Credential.objects.count() == 1
    assert (_last_audit().action, _last_audit().outcome) == ("credential.import", "failure")


def test_import_msp_authtoken_with_data_centre_and_label(simulator, sim_creds):
    credential = services.credential_paste(
        kind=CredentialKind.MSP_AUTHTOKEN,
        secret=sim_creds["msp_authtoken"],
        data_centre="EU",
        label="MSP EU",
    )
    assert (credential.customer, credential.data_centre, credential.label) == (None, "EU", "MSP EU")
    assert services.credential_secret(credential) == sim_creds["msp_authtoken"]


# --- revoke and forget ----------------------------------------------------------------------


def test_revoke_deletes_upstream_then_destroys_the_ciphertext(
    simulator, customer, sim_customer, manager
):
    credential = _create(customer, sim_customer)
    last4, fingerprint = credential.secret_last4, credential.fingerprint

    services.credential_revoke(credential=credential, actor=manager, ip=IP)

    credential.refresh_from_db()
    assert sim_tokens(simulator, sim_customer["zaaid"]) == []
    assert credential.state == CredentialState.REVOKED
    assert credential.revoked_at is not None
    assert credential.secret_ciphertext == ""
    assert (credential.secret_last4, credential.fingerprint) == (last4, fingerprint)
    assert services.credential_for_customer(customer) is None
    event = _last_audit()
    assert (event.action, event.outcome, event.actor_name) == (
        "credential.revoke",
        "success",
        "manager",
    )
    with pytest.raises(errors.CredentialError) as info:
        services.credential_revoke(credential=credential)
    assert info.value.code == errors.STATE


@pytest.mark.parametrize("fault", [{"kind": "status"}, {"kind": "reset"}])
def test_revoke_upstream_failure_keeps_the_token_active(simulator, customer, sim_customer, fault):
    credential = _create(customer, sim_customer)
    sim_post(simulator, "faults", {"endpoint": "authtoken_delete", **fault})

    with pytest.raises(errors.CredentialError) as info:
        services.credential_revoke(credential=credential)

    assert info.value.code == errors.UNREACHABLE
    credential.refresh_from_db()
    assert credential.state == CredentialState.ACTIVE
    assert services.credential_secret(credential) == sim_tokens(simulator, sim_customer["zaaid"])[0]
    assert (_last_audit().action, _last_audit().outcome) == ("credential.revoke", "failure")


def test_revoke_of_an_unknown_token_allows_forget(simulator, customer, manager):
    credential = _paste(customer, "12353635607.13213743991.00000000deadbeef")
    with pytest.raises(errors.CredentialError) as info:
        services.credential_forget(credential=credential)
    assert info.value.code == errors.STATE  # active: revoke it instead

    with pytest.raises(errors.CredentialError) as info:
        services.credential_revoke(credential=credential)
    assert info.value.code == errors.UNKNOWN_TOKEN
    credential.refresh_from_db()
    assert credential.state == CredentialState.INVALID
    assert credential.secret_ciphertext

    services.credential_forget(credential=credential, actor=manager, ip=IP)

    credential.refresh_from_db()
    assert credential.state == CredentialState.REVOKED
    assert credential.secret_ciphertext == ""
    event = _last_audit()
    assert (event.action, event.outcome, event.actor_name) == (
        "credential.forget",
        "success",
        "manager",
    )


def test_revoke_of_an_msp_authtoken_is_local_and_says_so(simulator, sim_creds):
    credential = services.credential_paste(
        kind=CredentialKind.MSP_AUTHTOKEN, secret=sim_creds["msp_authtoken"], label="MSP"
    )
    services.credential_revoke(credential=credential)
    credential.refresh_from_db()
    assert credential.state == CredentialState.REVOKED
    assert credential.secret_ciphertext == ""
    assert "Zoho Accounts" in _last_audit().detail


# --- OAuth ----------------------------------------------------------------------------------


def _connect(sim_creds, **kwargs):
    return services.credential_oauth_connect(
        client_id=sim_creds["client_id"],
        client_secret=kwargs.pop("client_secret", sim_creds["client_secret"]),
        grant_code=kwargs.pop("grant_code", sim_creds["grant_code"]),
        data_centre="US",
        label="MSP US",
        **kwargs,
    )


def test_oauth_connect_mint_and_disconnect(simulator, sim_creds, manager):
    credential = _connect(sim_creds, actor=manager, ip=IP)
    assert credential.kind == CredentialKind.OAUTH
    assert credential.origin == "connected"
    assert services.credential_client_secret(credential) == sim_creds["client_secret"]
    assert sim_creds["client_secret"] not in credential.client_secret_ciphertext
    assert (_last_audit().action, _last_audit().outcome) == ("oauth.connect", "success")
    assert sim_get(simulator, "tokens")["refresh_tokens"] == 1

    # The exchange's access token is cached: the test needs no mint.
    services.credential_test(credential=credential)
    assert sim_get(simulator, "counters")["mints"] == 0
    cache.clear()
    tested = services.credential_test(credential=credential)
    assert tested.last_test_ok is True
    assert sim_get(simulator, "counters")["mints"] == 1
    assert sim_calls(simulator, "short_customers") == 2

    services.credential_revoke(credential=credential, actor=manager)

    credential.refresh_from_db()
    assert sim_calls(simulator, "oauth_revoke") == 1
    assert credential.state == CredentialState.REVOKED
    assert credential.secret_ciphertext == credential.client_secret_ciphertext == ""
    assert (_last_audit().action, _last_audit().outcome) == ("oauth.disconnect", "success")


def test_oauth_connect_with_a_bad_grant_code(simulator, sim_creds):
    with pytest.raises(errors.CredentialError) as info:
        _connect(sim_creds, grant_code="1000.not-a-valid-code.0000")
    assert info.value.code == errors.REJECTED
    assert "grant code" in str(info.value)
    assert not Credential.objects.exists()
    event = _last_audit()
    assert (event.action, event.outcome) == ("oauth.connect", "failure")
    assert sim_creds["client_secret"] not in event.detail


def test_oauth_disconnect_of_a_token_zoho_does_not_know(simulator, sim_creds):
    credential = _connect(sim_creds)
    requests.post(
        f"{simulator.url}/oauth/v2/token/revoke",
        data={"token": services.credential_secret(credential)},
        timeout=5,
    )  # revoked elsewhere
    with pytest.raises(errors.CredentialError) as info:
        services.credential_revoke(credential=credential)
    assert info.value.code == errors.UNKNOWN_TOKEN
    credential.refresh_from_db()
    assert credential.state == CredentialState.INVALID
    services.credential_forget(credential=credential)
    credential.refresh_from_db()
    assert credential.state == CredentialState.REVOKED


# --- test connection ------------------------------------------------------------------------


def test_test_connection_of_an_msp_authtoken(simulator, sim_creds, manager):
    credential = services.credential_paste(
        kind=CredentialKind.MSP_AUTHTOKEN, secret=sim_creds["msp_authtoken"], label="MSP"
    )
    tested = services.credential_test(credential=credential, actor=manager, ip=IP)
    assert (tested.last_test_ok, tested.last_test_error) == (True, "")
    assert tested.last_tested_at is not None
    assert sim_calls(simulator, "portals") == 1
    event = _last_audit()
    assert (event.action, event.outcome, event.actor_name) == (
        "credential.test",
        "success",
        "manager",
    )


def test_test_connection_of_a_portal_token(simulator, customer, sim_customer):
    credential = _create(customer, sim_customer)
    tested = services.credential_test(credential=credential)
    assert tested.last_test_ok is True
    assert (
        sim_get(simulator, "counters")["by_customer"][sim_customer["zaaid"]][
            "monitor_groups_status"
        ]
        == 1
    )


def test_a_rejected_test_marks_invalid_and_a_later_success_restores(
    simulator, customer, sim_customer
):
    credential = _create(customer, sim_customer)
    sim_post(
        simulator,
        "faults",
        {"endpoint": "monitor_groups_status", "kind": "invalid_token", "count": 1},
    )

    tested = services.credential_test(credential=credential)
    assert tested.last_test_ok is False
    assert "rejected" in tested.last_test_error
    assert tested.state == CredentialState.INVALID
    assert services.credential_for_customer(customer) is None
    assert (_last_audit().action, _last_audit().outcome) == ("credential.test", "failure")

    tested = services.credential_test(credential=credential)
    assert tested.last_test_ok is True
    assert tested.state == CredentialState.ACTIVE
    assert _last_audit().detail == "restored to active"


def test_a_transient_test_failure_leaves_the_state_alone(simulator, customer, sim_customer):
    credential = _create(customer, sim_customer)
    sim_post(simulator, "faults", {"endpoint": "monitor_groups_status", "kind": "status"})
    tested = services.credential_test(credential=credential)
    assert tested.last_test_ok is False
    assert tested.last_test_error
    assert tested.state == CredentialState.ACTIVE


def test_a_revoked_credential_cannot_be_tested(simulator, customer, sim_customer):
    credential = _create(customer, sim_customer)
    services.credential_revoke(credential=credential)
    with pytest.raises(errors.CredentialError) as info:
        services.credential_test(credential=credential)
    assert info.value.code == errors.STATE


def test_replacing_the_secret_makes_an_invalid_credential_active(simulator, customer):
    credential = _paste(customer, "12353635607.13213743991.00000000deadbeef")
    services.credential_mark_invalid(credential=credential, reason="401")
    services.credential_replace_secret(
        credential=credential, secret="12353635607.13213743991.11111111deadbeef"
    )
    credential.refresh_from_db()
    assert credential.state == CredentialState.ACTIVE
    assert services.credential_secret(credential).startswith("12353635607.13213743991.1111")
    assert _last_audit().action == "credential.update"


def test_a_ciphertext_copied_from_another_row_does_not_decrypt(simulator, customer):
    mine = _paste(customer, "12353635607.13213743991.00000000deadbeef")
    theirs = _paste(customer, "12353635607.13213743991.11111111deadbeef")
    Credential.objects.filter(pk=mine.pk).update(secret_ciphertext=theirs.secret_ciphertext)
    mine.refresh_from_db()
    with pytest.raises(crypto.DecryptionError):
        services.credential_secret(mine)
    tested = services.credential_test(credential=mine)
    assert tested.last_test_ok is False
    assert "does not decrypt" in tested.last_test_error
    with pytest.raises(errors.CredentialError) as info:
        services.credential_revoke(credential=mine)
    assert info.value.code == errors.UNUSABLE
    mine.refresh_from_db()
    assert mine.state == CredentialState.INVALID  # so it can be forgotten
    services.credential_forget(credential=mine)
