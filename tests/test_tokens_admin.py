"""Admin: credentials show only masked secrets, the secret field is write-only; the audit
trail is read-only, filterable and searchable."""

import pytest
from django.urls import reverse

from tests.test_tokens_support import sim_tokens
from tokens import services
from tokens.models import AuditEvent, Credential, CredentialKind

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.test_tokens_support"]
TOKEN = "12353635607.13213743991.0123456789abcdef"
CHANGELIST = "admin:tokens_credential_changelist"


@pytest.fixture
def pasted(simulator, customer):
    return services.credential_paste(
        kind=CredentialKind.PORTAL_AUTHTOKEN, secret=TOKEN, customer=customer, label="pasted"
    )


def test_changelist_shows_masked_secret_and_no_ciphertext(admin_client, pasted):
    body = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "••••cdef" in body
    for column in ("Kind", "Label", "Customer", "State", "Secret", "Last tested"):
        assert column.lower() in body.lower()
    assert TOKEN not in body
    assert pasted.secret_ciphertext not in body
    assert "v1:" not in body


def test_change_form_secret_is_write_only(admin_client, pasted):
    url = reverse("admin:tokens_credential_change", args=[pasted.pk])
    body = admin_client.get(url).content.decode()
    assert 'name="new_secret"' in body
    assert "Leave blank to keep the current token" in body
    assert "••••cdef" in body
    assert "ciphertext" not in body
    assert TOKEN not in body and pasted.secret_ciphertext not in body

    before = pasted.secret_ciphertext
    response = admin_client.post(url, {"label": "renamed", "data_centre": "US", "new_secret": ""})
    assert response.status_code == 302
    pasted.refresh_from_db()
    assert (pasted.label, pasted.secret_ciphertext) == ("renamed", before)
    assert not AuditEvent.objects.filter(action="credential.update").exists()

    admin_client.post(url, {"label": "renamed", "data_centre": "US", "new_secret": TOKEN + "99"})
    pasted.refresh_from_db()
    assert services.credential_secret(pasted) == TOKEN + "99"
    assert AuditEvent.objects.get(action="credential.update").actor_name == "admin"


def test_add_through_the_admin_encrypts_and_audits(admin_client, simulator, sim_creds):
    response = admin_client.post(
        reverse("admin:tokens_credential_add"),
        {
            "kind": "oauth",
            "label": "MSP EU",
            "data_centre": "EU",
            "client_id": sim_creds["client_id"],
            "new_secret": "1000.refresh.0123456789abcdef",
            "new_client_secret": sim_creds["client_secret"],
        },
    )
    assert response.status_code == 302
    credential = Credential.objects.get()
    assert services.credential_client_secret(credential) == sim_creds["client_secret"]
    assert credential.created_by.username == "admin"
    assert AuditEvent.objects.get(action="oauth.connect").actor_name == "admin"


def test_add_without_a_token_is_refused(admin_client):
    response = admin_client.post(
        reverse("admin:tokens_credential_add"),
        {"kind": "msp_authtoken", "label": "x", "data_centre": "US", "new_secret": ""},
    )
    assert response.status_code == 200
    assert "needs its token" in response.content.decode()
    assert not Credential.objects.exists()


def test_admin_actions_test_and_revoke(admin_client, simulator, customer, sim_customer):
    credential = services.credential_create(
        customer=customer, email=sim_customer["email"], password=sim_customer["password"]
    )
    changelist = reverse(CHANGELIST)
    selected = {"_selected_action": [credential.pk]}

    admin_client.post(changelist, {"action": "test_selected", **selected})
    credential.refresh_from_db()
    assert credential.last_test_ok is True

    confirm = admin_client.post(changelist, {"action": "revoke_selected", **selected})
    assert confirm.status_code == 200
    assert b"Yes, revoke" in confirm.content
    credential.refresh_from_db()
    assert credential.state == "active"

    admin_client.post(changelist, {"action": "revoke_selected", "post": "yes", **selected})
    credential.refresh_from_db()
    assert credential.state == "revoked"
    assert sim_tokens(simulator, sim_customer["zaaid"]) == []


def test_deleting_a_credential_in_the_admin_is_audited_with_the_actor(admin_client, pasted):
    admin_client.post(reverse("admin:tokens_credential_delete", args=[pasted.pk]), {"post": "yes"})
    assert not Credential.objects.exists()
    event = AuditEvent.objects.get(action="credential.delete")
    assert (event.actor_name, event.credential_fingerprint) == ("admin", pasted.fingerprint)


def test_audit_admin_is_read_only(admin_client, pasted):
    event = AuditEvent.objects.first()
    change = reverse("admin:tokens_auditevent_change", args=[event.pk])
    assert admin_client.get(reverse("admin:tokens_auditevent_add")).status_code == 403
    assert (
        admin_client.get(reverse("admin:tokens_auditevent_delete", args=[event.pk])).status_code
        == 403
    )
    body = admin_client.get(change).content.decode()
    assert 'name="_save"' not in body
    admin_client.post(change, {"detail": "rewritten"})
    assert AuditEvent.objects.get(pk=event.pk).detail == event.detail
    changelist = admin_client.get(reverse("admin:tokens_auditevent_changelist"))
    assert b'name="action"' not in changelist.content  # no bulk actions (no delete)


def test_audit_admin_filters_and_search(admin_client, pasted):
    services.audit_record(action="keys.rotate", detail="rotated=3 failed=0")
    url = reverse("admin:tokens_auditevent_changelist")
    for query in (
        "?action=keys.rotate",
        "?outcome=success",
        "?at__gte=2000-01-01",
        "?q=rotated",
        "?q=127.0",
        f"?q={pasted.fingerprint}",
    ):
        response = admin_client.get(url + query)
        assert response.status_code == 200, query
    assert b"rotated=3" in admin_client.get(url + "?q=rotated").content
    assert b"rotated=3" not in admin_client.get(url + "?action=credential.import").content
