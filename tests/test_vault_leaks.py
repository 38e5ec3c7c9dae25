"""Secrets stay secret: at rest (SEC-07), everywhere they could be shown or logged (SEC-09),
and after a customer is deleted (SEC-13)."""

import logging
import sys

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.signals import got_request_exception
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.views.debug import ExceptionReporter

from msp_dashboard.site24x7.redact import secret_forms
from portals.models import Customer
from tests.test_tokens_support import canary, sim_tokens
from tokens import errors, services
from tokens.models import AuditEvent, Credential, CredentialKind

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.test_tokens_support"]
HTMX = {"HTTP_HX_REQUEST": "true"}
LOGGERS = (None, "django", "urllib3", "requests", "msp_dashboard", "tokens", "celery")


@pytest.fixture
def capture(caplog):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _assert_absent(secrets, texts):
    for secret in secrets:
        for form in secret_forms(secret):
            for n, text in enumerate(texts):
                assert form not in text, f"secret form found in text #{n}: {text[:200]!r}"


def _raw_rows(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed table names
        return [repr(row) for row in cursor.fetchall()]


def _audit_texts() -> list[str]:
    return [repr(row) for row in AuditEvent.objects.values_list()]


def _log_texts(capture) -> list[str]:
    texts = [capture.text]
    for record in capture.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    return texts


def _mail_texts() -> list[str]:
    texts = []
    for message in mail.outbox:
        texts += [message.subject, message.body]
        texts += [content for content, _ in getattr(message, "alternatives", [])]
    return texts


def test_raw_sql_shows_no_token_in_any_encoding(simulator, customer, sim_customer, sim_creds):
    created = services.credential_create(
        customer=customer, email=sim_customer["email"], password=sim_customer["password"]
    )
    pasted = canary()
    services.credential_paste(
        kind=CredentialKind.PORTAL_AUTHTOKEN, secret=pasted, customer=customer
    )
    oauth = services.credential_oauth_connect(
        client_id=sim_creds["client_id"],
        client_secret=sim_creds["client_secret"],
        grant_code=sim_creds["grant_code"],
        label="MSP",
    )
    secrets = [
        services.credential_secret(created),
        pasted,
        services.credential_secret(oauth),
        sim_creds["client_secret"],
        sim_customer["password"],
    ]
    rows = _raw_rows("tokens_credential") + _raw_rows("tokens_auditevent")
    assert len(rows) == 3 + 3
    assert all("'v1:" in row for row in _raw_rows("tokens_credential"))
    _assert_absent(secrets, rows)
    access = cache.get(f"oauth-access:{oauth.pk}:{oauth.fingerprint}")
    assert access.startswith("v1:")  # the cached access token is encrypted too


def test_canary_never_appears_in_pages_admin_logs_mail_or_audit(
    simulator, admin_client, capture, customer, sim_customer, sim_creds
):
    token, password, msp_token, client_secret, grant = (canary() for _ in range(5))
    replacement = canary()
    pages = []

    def page(response):
        pages.append(response.content.decode())
        return response

    create = reverse("tokens:create", args=[customer.pk])
    imp = reverse("tokens:import", args=[customer.pk])
    page(admin_client.post(imp, {"token": token, "label": "canary"}))
    page(admin_client.post(imp, {"token": token, "label": "again"}))  # duplicate: re-rendered
    page(admin_client.post(create, {"email": sim_customer["email"], "password": password}))
    page(admin_client.post(create, {"email": "not-an-email", "password": password}))
    page(admin_client.post(create, {"email": "x@example.com", "password": password}, **HTMX))
    page(
        admin_client.post(
            reverse("tokens:msp-import"), {"token": msp_token, "data_centre": "US", "label": "m"}
        )
    )
    connect = {
        "label": "o",
        "data_centre": "US",
        "client_id": sim_creds["client_id"],
        "client_secret": client_secret,
        "grant_code": grant,
    }
    page(admin_client.post(reverse("tokens:oauth-connect"), connect))
    services.credential_oauth_connect(
        client_id=sim_creds["client_id"],
        client_secret=sim_creds["client_secret"],
        grant_code=sim_creds["grant_code"],
        label="real",
    )
    credential = Credential.objects.get(label="canary")
    msp = Credential.objects.get(kind="msp_authtoken")

    # Upstream rejects the canaries: test, revoke (unknown), forget, each page on the way.
    for pk in (credential.pk, msp.pk):
        page(admin_client.post(reverse("tokens:test", args=[pk]), follow=True))
        page(admin_client.post(reverse("tokens:test", args=[pk]), **HTMX))
    page(admin_client.post(reverse("tokens:revoke", args=[credential.pk]), **HTMX))
    for name, args in [
        ("tokens:list", []),
        ("tokens:oauth-connect", []),
        ("tokens:msp-import", []),
        ("tokens:customer", [customer.pk]),
        ("tokens:create", [customer.pk]),
        ("tokens:import", [customer.pk]),
        ("tokens:revoke", [credential.pk]),
        ("tokens:forget", [credential.pk]),
        ("tokens:revoke", [msp.pk]),
    ]:
        for headers in ({}, HTMX):
            page(admin_client.get(reverse(name, args=args), **headers))

    # Admin: changelists, change forms, actions, a replaced secret.
    admin_urls = [
        reverse("admin:index"),
        reverse("admin:tokens_credential_changelist"),
        reverse("admin:tokens_credential_add"),
        reverse("admin:tokens_auditevent_changelist"),
        reverse("admin:tokens_credential_changelist") + "?q=canary",
    ]
    admin_urls += [
        reverse("admin:tokens_credential_change", args=[c.pk]) for c in Credential.objects.all()
    ]
    admin_urls += [
        reverse("admin:tokens_auditevent_change", args=[e.pk]) for e in AuditEvent.objects.all()
    ]
    for url in admin_urls:
        response = page(admin_client.get(url))
        assert response.status_code == 200, url
    changelist = reverse("admin:tokens_credential_changelist")
    for action in ("test_selected", "revoke_selected"):
        page(
            admin_client.post(
                changelist, {"action": action, "_selected_action": [credential.pk]}, follow=True
            )
        )
    change = reverse("admin:tokens_credential_change", args=[msp.pk])
    page(
        admin_client.post(
            change,
            {"label": "m", "data_centre": "US", "client_id": "", "new_secret": replacement},
            follow=True,
        )
    )
    page(admin_client.get(change))
    assert Credential.objects.get(pk=msp.pk).secret_last4 == replacement[-4:]
    assert Credential.objects.get(pk=credential.pk).state == "invalid"  # rejected upstream

    # Service errors raised with the canaries in hand.
    exception_texts = []
    for call in (
        lambda: services.credential_create(customer=customer, email="a@b.c", password=password),
        lambda: services.credential_revoke(credential=Credential.objects.get(label="canary")),
        lambda: services.credential_paste(
            kind=CredentialKind.PORTAL_AUTHTOKEN, secret=token, customer=customer
        ),
        lambda: services.credential_oauth_connect(
            client_id="1000.x", client_secret=client_secret, grant_code=grant
        ),
    ):
        with pytest.raises(errors.CredentialError) as info:
            call()
        exception_texts += [str(info.value), repr(info.value), repr(info.value.__cause__)]

    secrets = [token, password, msp_token, client_secret, grant, replacement]
    assert sum(1 for p in pages if p) > 40
    _assert_absent(secrets, pages)
    _assert_absent(secrets, _log_texts(capture))
    _assert_absent(secrets, _mail_texts())
    _assert_absent(secrets, _audit_texts())
    _assert_absent(secrets, exception_texts)
    _assert_absent(secrets, _raw_rows("tokens_credential"))
    assert AuditEvent.objects.filter(action="credential.create", outcome="failure").exists()


@pytest.mark.parametrize("view", ["create", "import"])
def test_an_error_inside_a_view_reports_no_secret(
    simulator, settings, manager, customer, sim_customer, capture, view
):
    """A 500 in the middle of a credential view (here: the encryption key breaks between
    start-up and the request): the error report, the admin mail and the logs hold no secret."""
    settings.DEBUG = False
    settings.ADMINS = [("Ops", "ops@example.com")]
    token = canary()
    reports = []

    def grab(sender, request, **kwargs):
        reports.append(ExceptionReporter(request, *sys.exc_info()))

    got_request_exception.connect(grab)
    try:
        client = Client(raise_request_exception=False)
        client.force_login(manager)
        settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]
        if view == "create":
            data = {"email": sim_customer["email"], "password": sim_customer["password"]}
        else:
            data = {"token": token}
        response = client.post(reverse(f"tokens:{view}", args=[customer.pk]), data)
    finally:
        got_request_exception.disconnect(grab)

    assert response.status_code == 500
    assert len(reports) == 1
    texts = [
        response.content.decode(),
        reports[0].get_traceback_text(),
        reports[0].get_traceback_html(),
        *_mail_texts(),
        *_log_texts(capture),
    ]
    assert len(mail.outbox) == 1
    assert "KeyConfigError" in reports[0].get_traceback_text()
    secrets = [sim_customer["password"], token, *sim_tokens(simulator, sim_customer["zaaid"])]
    _assert_absent(secrets, texts)
    assert sim_tokens(simulator, sim_customer["zaaid"]) == []  # keys checked before upstream


def test_deleting_a_customer_leaves_no_ciphertext(simulator, sim_customers):
    data = sim_customers[1]
    victim = Customer.objects.create(
        name=data["name"],
        auth_generation="legacy",
        portal_id=data["portal_id"],
        zaid=data["zaid"],
        zaaid=data["zaaid"],
    )
    services.credential_create(customer=victim, email=data["email"], password=data["password"])
    services.credential_paste(
        kind=CredentialKind.PORTAL_AUTHTOKEN, secret=canary(), customer=victim
    )
    revoked = services.credential_paste(
        kind=CredentialKind.PORTAL_AUTHTOKEN, secret=canary(), customer=victim
    )
    services.credential_mark_invalid(credential=revoked, reason="x")
    services.credential_forget(credential=revoked)
    survivor = services.credential_paste(kind=CredentialKind.MSP_AUTHTOKEN, secret=canary())
    pk = victim.pk

    victim.delete()

    assert not Credential.objects.filter(customer_id=pk).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM tokens_credential WHERE customer_id = %s", [pk])
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT COUNT(*) FROM tokens_credential WHERE secret_ciphertext <> ''")
        assert cursor.fetchone() == (1,)
    assert Credential.objects.get() == survivor
    deleted = AuditEvent.objects.filter(action="credential.delete", customer_id=pk)
    assert deleted.count() == 3
