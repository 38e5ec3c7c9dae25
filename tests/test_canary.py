"""SEC-09, the main leak test: a canary token and a canary password never appear anywhere.

A customer's authtoken is `CANARY-<uuid4>` (the simulator accepts it as that customer's token,
so refreshes get real answers); a second canary is a password, typed into the create-token
form and into the login form. Then everything that exists runs with them in hand:
(a) every page, partial, JSON endpoint and admin page (the changelist and change form of every
    registered model), as a superuser;
(b) refreshes against the simulator answering 200, 401, 429, 500, a hang (read timeout), a
    connection reset, malformed JSON and HTML; the fan-out and "refresh now";
(c) an exception inside the refresh task and inside a view that holds the decrypted token,
    once with DEBUG=False and ADMINS set (the error mail), once as the technical 500 page;
(d) every log record at DEBUG (root, django, celery, urllib3, requests and ours), the mail
    outbox, every Celery message (`apply_async` arguments: ids only), the audit trail and the
    axes login records.
Neither canary, nor its base64 or URL-encoded forms, may appear in any of it."""

from __future__ import annotations

import logging
import traceback

import pytest
import requests
from celery.app.task import Task
from django.contrib import admin
from django.core import mail
from django.test import Client
from django.urls import reverse

from msp_dashboard.site24x7.redact import secret_forms
from portals.models import Customer, MonitorGroup, StatusChange
from portals.services import customer_refresh, customers_enqueue_due
from portals.tasks import refresh_customer
from tests.test_security_support import all_urls, make_world
from tests.test_tokens_support import canary, customer_from_sim, sim_get, sim_post
from tokens import services
from tokens.models import AuditEvent, CredentialKind

pytestmark = pytest.mark.django_db
LOGGERS = (None, "django", "celery", "urllib3", "requests", "msp_dashboard", "tokens",
           "portals", "axes", "alerts", "kombu")  # fmt: skip
HTMX = {"HTTP_HX_REQUEST": "true"}
PASSWORD = "a-long-root-pass-123"


@pytest.fixture
def texts():
    return []


@pytest.fixture
def capture(caplog):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def sent(monkeypatch):
    """Every Celery message the code sends: (task name, args, kwargs); nothing reaches a
    broker (a task queued on commit is recorded when the transaction commits)."""
    messages = []

    def record(self, args=None, kwargs=None, **options):
        messages.append((self.name, list(args or ()), dict(kwargs or {})))

    monkeypatch.setattr(Task, "apply_async", record)
    return messages


@pytest.fixture
def setup(simulator, settings, django_user_model):
    settings.SITE24X7_READ_TIMEOUT = 0.5  # the hang fault ends quickly
    settings.ADMINS = [("Ops", "ops@example.com")]
    data = sim_get(simulator, "customers")["customers"][0]
    token, password = canary(), canary()
    # The simulator (a test double) accepts the canary as this customer's authtoken.
    simulator.state.authtokens.owner[token] = data["zaaid"]
    simulator.state.authtokens.by_customer.setdefault(data["zaaid"], []).append(token)
    customer = customer_from_sim(data)
    credential = services.credential_paste(
        kind=CredentialKind.PORTAL_AUTHTOKEN, secret=token, customer=customer, label="canary"
    )
    root = django_user_model.objects.create_superuser("root", password=PASSWORD)
    return {
        "sim": simulator,
        "data": data,
        "token": token,
        "password": password,
        "customer": customer,
        "credential": credential,
        "root": root,
    }


def _assert_absent(secrets, texts):
    assert texts, "nothing was collected"
    for secret in secrets:
        for form in secret_forms(secret):
            for n, text in enumerate(texts):
                at = text.find(form)
                assert at < 0, f"canary found in text #{n}: {text[max(0, at - 300) : at + 60]!r}"


def _log_texts(capture) -> list[str]:
    texts = [capture.text]
    for record in capture.records:
        texts += [record.getMessage(), repr(record.args)]
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    return texts


def _mail_texts() -> list[str]:
    texts = []
    for message in mail.outbox:
        texts += [message.subject, message.body]
        texts += [content for content, _ in getattr(message, "alternatives", [])]
    return texts


def _reset_back_pressure(customer) -> None:
    Customer.objects.filter(pk=customer.pk).update(
        throttled_until=None, paused_until=None, consecutive_failures=0, lease_until=None
    )


# --- (b) refreshes through every kind of answer --------------------------------------------------


def test_refreshes_through_every_answer_leak_nothing(setup, capture, sent, texts):
    sim, customer = setup["sim"], setup["customer"]
    outcomes = []
    faults = [
        None,  # 200
        {"kind": "status", "http_status": 500},
        {"kind": "status", "http_status": 429, "retry_after": 7},
        {"kind": "reset"},
        {"kind": "malformed"},
        {"kind": "html"},
        {"kind": "hang"},
        {"kind": "invalid_token"},  # 401 last: it invalidates the credential
    ]
    for fault in faults:
        sim_post(sim, "faults/clear")
        if fault:
            sim_post(sim, "faults", {"customer": setup["data"]["zaaid"], "count": 1, **fault})
        _reset_back_pressure(customer)
        outcome = customer_refresh(customer_id=customer.pk)
        row = Customer.objects.filter(pk=customer.pk).values().get()
        outcomes.append(outcome.result if outcome.result == "ok" else row["last_error_kind"])
        texts += [repr(outcome), str(row)]
    assert outcomes == [
        "ok", "server", "throttled", "connection", "response", "server", "timeout", "auth"
    ]  # fmt: skip
    assert MonitorGroup.objects.filter(customer=customer).exists()
    # The fan-out and "refresh now" send ids only.
    Customer.objects.filter(pk=customer.pk).update(refresh_enqueued_at=None, refresh_round="")
    customers_enqueue_due()
    texts += [repr(m) for m in sent]
    texts += [repr(e) for e in AuditEvent.objects.values_list()]
    texts += [repr(row) for row in StatusChange.objects.values_list()]
    texts += _log_texts(capture)
    _assert_absent([setup["token"]], texts)
    for _name, args, kwargs in sent:
        assert all(type(a) is int for a in args), args
        assert all(type(v) in (int, bool) for v in kwargs.values()), kwargs


def test_an_exception_inside_the_refresh_task_leaks_nothing(setup, capture, monkeypatch):
    _explode_in_the_client(monkeypatch)
    with pytest.raises(RuntimeError) as info:
        refresh_customer.run(setup["customer"].pk)
    texts = [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))]
    texts += _log_texts(capture)
    _assert_absent([setup["token"]], texts)


# --- (a) every page, and the forms that take a password -----------------------------------------


def test_every_page_admin_page_and_json_endpoint_leaks_nothing(
    setup, capture, sent, django_capture_on_commit_callbacks
):
    token, password, customer = setup["token"], setup["password"], setup["customer"]
    client = Client()
    pages = []

    # The canary password typed into the login form (known and unknown user) and the
    # create-token form (the simulator refuses it), before the real login.
    for username in ("root", "no-such-user"):
        response = client.post("/login/", {"username": username, "password": password})
        pages.append(response.content.decode())
    assert client.post("/login/", {"username": "root", "password": PASSWORD}).status_code == 302
    create = reverse("tokens:create", args=[customer.pk])
    form = {"email": setup["data"]["email"], "password": password}
    for headers in ({}, HTMX):
        pages.append(client.post(create, form, **headers).content.decode())
    assert customer_refresh(customer_id=customer.pk).result == "ok"
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("portals:customer-refresh", args=[customer.pk]))
    assert [m[0] for m in sent] == ["portals.tasks.refresh_customer"]
    assert sent[0][1] == [customer.pk]

    world = make_world()  # one of everything else: every URL and admin form has an object
    for url in all_urls(world):
        for headers in ({}, HTMX):
            response = client.get(url.path, **headers)
            pages.append(response.content.decode(errors="replace"))
    pages += _admin_pages(client)

    page = client.get(reverse("portals:customer", args=[customer.pk])).content.decode()
    assert "••••" + token[-4:] in page  # shown masked, nothing more
    texts = pages + _log_texts(capture) + _mail_texts() + [repr(m) for m in sent]
    texts += [repr(e) for e in AuditEvent.objects.values_list()]
    texts += _axes_rows()
    assert sum(1 for p in pages if p) > 150
    _assert_absent([token, password], texts)


def _admin_pages(client) -> list[str]:
    """The changelist and the change form (first object) of every registered model."""
    pages = []
    for model in admin.site._registry:
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        response = client.get(changelist)
        assert response.status_code == 200, changelist
        pages.append(response.content.decode())
        pages.append(client.get(changelist + "?q=CANARY").content.decode())
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
            response = client.get(change)
            assert response.status_code == 200, change
            pages.append(response.content.decode())
    return pages


def _axes_rows() -> list[str]:
    from axes.models import AccessAttempt, AccessLog

    rows = [repr(r) for r in AccessAttempt.objects.values_list()]
    return rows + [repr(r) for r in AccessLog.objects.values_list()]


# --- (c) a 500 inside a view that holds the decrypted token --------------------------------------


def _explode_in_the_client(monkeypatch):
    """The HTTP stack fails inside the client, deep under credential_test, while the
    decrypted token sits in local variables of several frames."""

    def explode(self, request, *args, **kwargs):
        raise RuntimeError("the network stack broke")

    # requests' adapter: the layer the transport sends through (http.PooledAdapter's parent)
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", explode)


@pytest.mark.parametrize("debug", [False, True])
def test_a_500_with_the_token_in_hand_leaks_nothing(setup, settings, capture, monkeypatch, debug):
    settings.DEBUG = debug
    client = Client(raise_request_exception=False)
    client.force_login(setup["root"])
    _explode_in_the_client(monkeypatch)
    url = reverse("tokens:test", args=[setup["credential"].pk])
    response = client.post(url, {"password": setup["password"]})
    assert response.status_code == 500
    html = response.content.decode()
    texts = [html, *_log_texts(capture), *_mail_texts()]
    if debug:
        assert "Traceback" in html and "RuntimeError" in html  # the technical page
        assert "********************" in html  # variables were there, and hidden
        assert mail.outbox == []
    else:
        assert len(mail.outbox) == 1  # ADMINS got the report
        assert "RuntimeError" in mail.outbox[0].body
        assert "credential_test" in mail.outbox[0].body  # the frames are in the report
    _assert_absent([setup["token"], setup["password"]], texts)
