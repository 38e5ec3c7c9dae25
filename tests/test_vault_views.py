"""Credential views: pages and htmx fragments, POST-only changes with CSRF, permissions."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from tests.test_tokens_support import sim_calls, sim_get, sim_post, sim_tokens
from tokens import services
from tokens.models import AuditEvent, Credential, CredentialKind, CredentialState

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.test_tokens_support"]
HTMX = {"HTTP_HX_REQUEST": "true"}
TOKEN = "12353635607.13213743991.0123456789abcdef"


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _portal_token(customer, secret=TOKEN):
    return services.credential_paste(
        kind=CredentialKind.PORTAL_AUTHTOKEN, secret=secret, customer=customer, label="pasted"
    )


def _msp(sim_creds):
    return services.credential_paste(
        kind=CredentialKind.MSP_AUTHTOKEN, secret=sim_creds["msp_authtoken"], label="MSP US"
    )


# --- create ---------------------------------------------------------------------------------


def test_create_form_page_and_htmx_fragment(manager_client, customer):
    url = reverse("tokens:create", args=[customer.pk])
    page = manager_client.get(url)
    assert page.status_code == 200
    assert b"<html" in page.content and b'class="topbar"' in page.content
    assert b'name="password"' in page.content and b'name="email"' in page.content
    assert "no-store" in page["Cache-Control"]
    assert "0 of 10 live authtokens" in page.content.decode()

    fragment = manager_client.get(url, **HTMX)
    assert fragment.status_code == 200
    assert b"<html" not in fragment.content
    assert fragment.content.lstrip().startswith(b'<div class="card" id="credential-form">')
    assert f'hx-post="{url}"'.encode() in fragment.content


def test_create_success_redirects_with_a_message(simulator, manager_client, customer, sim_customer):
    response = manager_client.post(
        reverse("tokens:create", args=[customer.pk]),
        {"email": sim_customer["email"], "password": sim_customer["password"], "label": "noc"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("tokens:customer", args=[customer.pk])
    credential = Credential.objects.get()
    assert (credential.label, credential.created_by.username) == ("noc", "manager")
    assert _messages(response) == [
        f"Authtoken {credential.masked_secret} created for {customer.name}."
    ]
    event = AuditEvent.objects.get(action="credential.create")
    assert str(event.source_ip) == "127.0.0.1"


def test_create_success_over_htmx_triggers_the_grid(
    simulator, manager_client, customer, sim_customer
):
    response = manager_client.post(
        reverse("tokens:create", args=[customer.pk]),
        {"email": sim_customer["email"], "password": sim_customer["password"]},
        **HTMX,
    )
    assert response.status_code == 200
    assert response["HX-Trigger"] == "credentials-changed"
    assert b"created for" in response.content
    assert b"<html" not in response.content


def test_create_wrong_password_rerenders_without_the_password(
    simulator, manager_client, customer, sim_customer
):
    password = "wrong-password-xyz-123"
    response = manager_client.post(
        reverse("tokens:create", args=[customer.pk]),
        {"email": sim_customer["email"], "password": password},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "wrong email or password" in body
    assert password not in body
    assert sim_customer["email"] in body  # the email is kept, the password is not
    assert not Credential.objects.exists()


def test_create_at_the_cap_is_refused_without_calling_upstream(
    simulator, manager_client, customer, sim_customer
):
    for n in range(10):
        _portal_token(customer, f"{TOKEN}{n:02d}")
    sim_post(simulator, "counters/reset")
    url = reverse("tokens:create", args=[customer.pk])

    page = manager_client.get(url).content.decode()
    assert "10 of 10 live authtokens" in page
    assert "revoke an authtoken before creating another" in page

    response = manager_client.post(
        url, {"email": sim_customer["email"], "password": sim_customer["password"]}
    )
    assert response.status_code == 200
    assert "Site24x7 maximum of 10" in response.content.decode()
    assert sim_calls(simulator, "authtoken_create") == 0


def test_create_shows_an_unreachable_upstream(simulator, manager_client, customer, sim_customer):
    sim_post(simulator, "faults", {"endpoint": "authtoken_create", "kind": "status"})
    response = manager_client.post(
        reverse("tokens:create", args=[customer.pk]),
        {"email": sim_customer["email"], "password": sim_customer["password"]},
        **HTMX,
    )
    assert response.status_code == 200
    assert "HX-Trigger" not in response
    assert "could not be reached or failed" in response.content.decode()


# --- import ---------------------------------------------------------------------------------


def test_import_and_the_duplicate_is_refused_without_echo(simulator, manager_client, customer):
    url = reverse("tokens:import", args=[customer.pk])
    assert manager_client.post(url, {"token": TOKEN, "label": "a"}).status_code == 302
    response = manager_client.post(url, {"token": TOKEN, "label": "b"})
    assert response.status_code == 200
    assert "already stored" in response.content.decode()
    assert TOKEN not in response.content.decode()
    assert Credential.objects.count() == 1


def test_import_rejects_a_token_with_spaces(simulator, manager_client, customer):
    response = manager_client.post(
        reverse("tokens:import", args=[customer.pk]), {"token": "abc def ghi jkl mno pqr"}
    )
    assert "no spaces" in response.content.decode()
    assert "abc def" not in response.content.decode()


def test_msp_import_and_list_page(simulator, manager_client, sim_creds):
    response = manager_client.post(
        reverse("tokens:msp-import"),
        {"token": sim_creds["msp_authtoken"], "data_centre": "EU", "label": "MSP EU"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("tokens:list")
    credential = Credential.objects.get()
    assert (credential.kind, credential.data_centre) == ("msp_authtoken", "EU")

    page = manager_client.get(reverse("tokens:list")).content.decode()
    assert "MSP EU" in page
    assert credential.masked_secret in page
    assert sim_creds["msp_authtoken"] not in page


def test_oauth_connect_page(simulator, manager_client, sim_creds):
    url = reverse("tokens:oauth-connect")
    assert b'name="grant_code"' in manager_client.get(url).content
    response = manager_client.post(
        url,
        {
            "label": "MSP US",
            "data_centre": "US",
            "client_id": sim_creds["client_id"],
            "client_secret": sim_creds["client_secret"],
            "grant_code": sim_creds["grant_code"],
        },
        **HTMX,
    )
    assert response["HX-Trigger"] == "credentials-changed"
    assert Credential.objects.get().kind == "oauth"


def test_oauth_connect_bad_code_keeps_the_client_id_only(simulator, manager_client, sim_creds):
    response = manager_client.post(
        reverse("tokens:oauth-connect"),
        {
            "label": "MSP US",
            "data_centre": "US",
            "client_id": sim_creds["client_id"],
            "client_secret": sim_creds["client_secret"],
            "grant_code": "1000.bad.code",
        },
    )
    body = response.content.decode()
    assert "refused the grant code" in body
    assert sim_creds["client_id"] in body
    assert sim_creds["client_secret"] not in body
    assert "1000.bad.code" not in body


# --- revoke, forget, test -------------------------------------------------------------------


def test_revoke_needs_a_confirmation_then_posts(simulator, manager_client, customer, sim_customer):
    credential = services.credential_create(
        customer=customer, email=sim_customer["email"], password=sim_customer["password"]
    )
    url = reverse("tokens:revoke", args=[credential.pk])

    page = manager_client.get(url)
    assert page.status_code == 200
    assert b"btn-danger" in page.content
    credential.refresh_from_db()
    assert credential.state == CredentialState.ACTIVE
    assert len(sim_tokens(simulator, sim_customer["zaaid"])) == 1

    response = manager_client.post(url)
    assert response.status_code == 302
    credential.refresh_from_db()
    assert credential.state == CredentialState.REVOKED
    assert sim_tokens(simulator, sim_customer["zaaid"]) == []
    assert "revoked" in _messages(response)[0]


def test_revoke_failure_is_shown_and_unknown_offers_forget(simulator, manager_client, customer):
    credential = _portal_token(customer)
    response = manager_client.post(reverse("tokens:revoke", args=[credential.pk]), **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert "does not know this token" in body
    assert reverse("tokens:forget", args=[credential.pk]) in body

    forget = reverse("tokens:forget", args=[credential.pk])
    assert b"Forget" in manager_client.get(forget).content
    response = manager_client.post(forget, **HTMX)
    assert response["HX-Trigger"] == "credentials-changed"
    credential.refresh_from_db()
    assert (credential.state, credential.secret_ciphertext) == (CredentialState.REVOKED, "")


def test_revoke_while_upstream_fails_keeps_it_active(
    simulator, manager_client, customer, sim_customer
):
    credential = services.credential_create(
        customer=customer, email=sim_customer["email"], password=sim_customer["password"]
    )
    sim_post(simulator, "faults", {"endpoint": "authtoken_delete", "kind": "status"})
    response = manager_client.post(reverse("tokens:revoke", args=[credential.pk]))
    assert response.status_code == 200
    assert "could not be reached or failed" in response.content.decode()
    credential.refresh_from_db()
    assert credential.state == CredentialState.ACTIVE


def test_forget_of_an_active_credential_is_refused(simulator, manager_client, customer):
    credential = _portal_token(customer)
    url = reverse("tokens:forget", args=[credential.pk])
    assert "revoke" in manager_client.get(url).content.decode().lower()
    response = manager_client.post(url)
    assert response.status_code == 200
    assert "Only a credential that Site24x7 rejected" in response.content.decode()
    credential.refresh_from_db()
    assert credential.state == CredentialState.ACTIVE


def test_test_connection_is_post_only(simulator, manager_client, sim_creds):
    credential = _msp(sim_creds)
    url = reverse("tokens:test", args=[credential.pk])
    assert manager_client.get(url).status_code == 405

    response = manager_client.post(url)
    assert response.status_code == 302
    assert "connection OK" in _messages(response)[0]

    sim_post(simulator, "faults", {"endpoint": "portals", "kind": "status"})
    response = manager_client.post(url, **HTMX)
    assert response["HX-Trigger"] == "credentials-changed"
    assert "test failed" in response.content.decode()


def test_customer_page_shows_the_count_and_the_token_in_use(simulator, manager_client, customer):
    older = _portal_token(customer)
    newer = _portal_token(customer, TOKEN + "ff")
    page = manager_client.get(reverse("tokens:customer", args=[customer.pk])).content.decode()
    assert "2 of 10" in page
    assert older.masked_secret in page and newer.masked_secret in page
    assert page.count("in use") == 1
    assert TOKEN not in page


# --- access, CSRF, safe methods -------------------------------------------------------------


def _all_urls(customer, credential) -> list[str]:
    return [
        reverse("tokens:list"),
        reverse("tokens:oauth-connect"),
        reverse("tokens:msp-import"),
        reverse("tokens:customer", args=[customer.pk]),
        reverse("tokens:create", args=[customer.pk]),
        reverse("tokens:import", args=[customer.pk]),
        reverse("tokens:revoke", args=[credential.pk]),
        reverse("tokens:disconnect", args=[credential.pk]),
        reverse("tokens:forget", args=[credential.pk]),
        reverse("tokens:test", args=[credential.pk]),
    ]


def test_anonymous_users_are_sent_to_login(simulator, client, customer):
    credential = _portal_token(customer)
    for url in _all_urls(customer, credential):
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/login/"), url


def test_users_without_the_permission_get_403_and_it_is_audited(
    simulator, client, customer, django_user_model
):
    credential = _portal_token(customer)
    client.force_login(django_user_model.objects.create_user("viewer"))
    get_only = {reverse("tokens:list"), reverse("tokens:customer", args=[customer.pk])}
    for url in _all_urls(customer, credential):
        response = (client.get if url in get_only else client.post)(url)
        assert response.status_code == 403, url
    assert Credential.objects.get().state == CredentialState.ACTIVE
    denials = AuditEvent.objects.filter(action="access.denied", outcome="denied")
    assert denials.count() == len(_all_urls(customer, credential))
    assert {e.actor_name for e in denials} == {"viewer"}


def test_unknown_objects_are_404(manager_client):
    assert manager_client.get(reverse("tokens:customer", args=[999999])).status_code == 404
    for url in (
        reverse("tokens:create", args=[999999]),
        reverse("tokens:import", args=[999999]),
        reverse("tokens:revoke", args=[999999]),
        reverse("tokens:forget", args=[999999]),
        reverse("tokens:test", args=[999999]),
    ):
        assert manager_client.post(url).status_code == 404, url


def _post_data(sim_creds, sim_customer) -> dict:
    return {
        "email": sim_customer["email"],
        "password": sim_customer["password"],
        "token": sim_creds["msp_authtoken"],
        "label": "x",
        "data_centre": "US",
        "client_id": sim_creds["client_id"],
        "client_secret": sim_creds["client_secret"],
        "grant_code": sim_creds["grant_code"],
    }


def test_csrf_is_enforced_on_every_post(simulator, manager, customer, sim_creds, sim_customer):
    credential = _msp(sim_creds)
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(manager)
    before = (Credential.objects.count(), AuditEvent.objects.count())
    for url in _all_urls(customer, credential):
        response = csrf_client.post(url, _post_data(sim_creds, sim_customer))
        assert response.status_code == 403, url  # CSRF runs before the method check
    assert (Credential.objects.count(), AuditEvent.objects.count()) == before
    assert sim_get(simulator, "counters")["requests"]["authtoken_create"] == 0

    # ...and the same POST with the token works.
    csrf_client.get(reverse("tokens:test", args=[credential.pk]))  # 405, but no cookie yet
    page = csrf_client.get(reverse("tokens:revoke", args=[credential.pk]))
    token = page.context["csrf_token"]
    response = csrf_client.post(
        reverse("tokens:test", args=[credential.pk]), {"csrfmiddlewaretoken": str(token)}
    )
    assert response.status_code == 302


def test_get_never_changes_data_nor_calls_upstream(
    simulator, manager_client, customer, sim_creds, sim_customer
):
    credential = _portal_token(customer)
    services.credential_mark_invalid(credential=credential, reason="x")
    _msp(sim_creds)
    sim_post(simulator, "counters/reset")

    def snapshot():
        rows = list(Credential.objects.order_by("pk").values())
        return rows, AuditEvent.objects.count()

    before = snapshot()
    for url in _all_urls(customer, credential):
        for headers in ({}, HTMX):
            response = manager_client.get(url, **headers)
            assert response.status_code in (200, 405), url
    assert snapshot() == before
    assert sum(sim_get(simulator, "counters")["requests"].values()) == 0
