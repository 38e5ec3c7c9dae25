"""Alert deliveries over real HTTP to a listener on loopback (Slack, Teams, JSON webhook),
email through Django's locmem outbox, Celery retries on a failing listener, the delivery
log, the channel pages and their "send test" button, and no webhook URL (a secret) anywhere
but its encrypted column."""

from __future__ import annotations

import hashlib
import hmac
import io
import logging

import pytest
from django.core import mail
from django.db import connection

from alerts.models import AlertChannel, Delivery, DeliveryAttempt, DeliveryState
from alerts.services import channel_send_test, delivery_attempt
from msp_dashboard.site24x7 import Status
from tests.alerts_support import Clock, channel, store
from tests.grid_support import make_customer
from tokens.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_cache")]
pytest_plugins = ["tests.alerts_support"]

SECRET_PATH = "T0CANARY/B0CANARY/CANARYsecretWebhookTokenValue"


def _problem(customer, capture):
    clock = Clock()
    for status in (Status.UP, Status.DOWN, Status.DOWN):
        store(clock, customer, [("ERP", status)], capture=capture)


def test_slack_gets_text_and_blocks(listener, eager, django_capture_on_commit_callbacks):
    channel("slack", url=listener.hook(SECRET_PATH), include_groups=False)
    _problem(
        make_customer("Blue <Plastics> & Co", fetched=None), django_capture_on_commit_callbacks
    )
    (request,) = listener.received
    body = request.json
    assert request.headers["Content-Type"] == "application/json"
    assert body["text"].startswith(":red_circle: Down: Blue <Plastics> & Co")
    assert [b["type"] for b in body["blocks"]][:2] == ["header", "section"]
    assert body["blocks"][0]["text"]["text"] == "Down: Blue <Plastics> & Co"
    # mrkdwn escapes &, < and > (Slack would read <...> as a link)
    assert "Blue &lt;Plastics&gt; &amp; Co: Up → Down" in body["blocks"][1]["text"]["text"]
    facts = body["blocks"][2]["fields"]
    assert {"type": "mrkdwn", "text": "*Status*\nUp → Down"} in facts


def test_teams_gets_an_adaptive_card(listener, eager, django_capture_on_commit_callbacks, settings):
    settings.DASHBOARD_URL = "https://noc.example.com"
    channel("teams", url=listener.hook(SECRET_PATH), include_groups=False)
    customer = make_customer("Acme", fetched=None)
    _problem(customer, django_capture_on_commit_callbacks)
    (request,) = listener.received
    body = request.json
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"][0] == {
        "type": "TextBlock",
        "size": "Medium",
        "weight": "Bolder",
        "color": "attention",
        "text": "Down: Acme",
        "wrap": True,
    }
    facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
    assert facts["Customer"] == "Acme" and facts["Status"] == "Up → Down"
    assert card["actions"] == [
        {
            "type": "Action.OpenUrl",
            "title": "Open in the dashboard",
            "url": f"https://noc.example.com/customers/{customer.pk}/",
        }
    ]


def test_a_webhook_is_signed_and_names_its_delivery(
    listener, eager, django_capture_on_commit_callbacks
):
    from alerts.services import channel_save

    hook = AlertChannel(name="Ops", kind="webhook", include_groups=False)
    channel_save(channel=hook, url=listener.hook(SECRET_PATH), signing_secret="s3cret-signing-key")
    _problem(make_customer("Acme", fetched=None), django_capture_on_commit_callbacks)
    (request,) = listener.received
    expected = hmac.new(b"s3cret-signing-key", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-MSP-Signature"] == f"sha256={expected}"
    delivery = Delivery.objects.get()
    assert request.headers["X-MSP-Delivery"] == str(delivery.pk)
    assert request.json["delivery_id"] == delivery.pk and request.json["version"] == 1


def test_a_failing_listener_is_retried_and_the_log_shows_each_attempt(
    listener, eager, django_capture_on_commit_callbacks
):
    hook = channel("webhook", url=listener.hook(SECRET_PATH), include_groups=False)
    listener.answer(500)
    _problem(make_customer("Acme", fetched=None), django_capture_on_commit_callbacks)
    assert len(listener.received) == 2  # the 500, then the 200 of Celery's retry
    delivery = Delivery.objects.get(channel=hook)
    assert delivery.state == DeliveryState.SENT and delivery.attempts == 2
    first, second = DeliveryAttempt.objects.filter(delivery=delivery).order_by("number")
    assert (first.ok, first.http_status, first.error) == (False, 500, "HTTP 500: upstream trouble")
    assert (second.ok, second.http_status, second.error) == (True, 200, "")


def test_a_permanent_error_is_not_retried_and_attempts_stop_at_the_limit(
    listener, eager, django_capture_on_commit_callbacks, settings
):
    settings.ALERT_MAX_ATTEMPTS = 3
    gone = channel(
        "webhook", url=listener.hook("gone-hook-000000000001"), name="A gone", include_groups=False
    )
    down = channel(
        "slack", url=listener.hook("down-hook-000000000002"), name="B down", include_groups=False
    )
    listener.answer(404, 503, 503, 503)  # "A gone" first (by name): 404; "B down": 503 x 3
    _problem(make_customer("Acme", fetched=None), django_capture_on_commit_callbacks)
    assert Delivery.objects.get(channel=gone).attempts == 1
    assert Delivery.objects.get(channel=gone).state == DeliveryState.FAILED
    failed = Delivery.objects.get(channel=down)
    assert (failed.state, failed.attempts, failed.last_http_status) == ("failed", 3, 503)


def test_an_unreachable_url_is_a_transient_error_without_the_url(settings):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nobody listens there
    hook = channel("webhook", url=f"http://127.0.0.1:{port}/hooks/{SECRET_PATH}")
    delivery = channel_send_test(channel=hook)
    outcome = delivery_attempt(delivery_id=delivery.pk)
    assert outcome.retry_in is not None
    delivery.refresh_from_db()
    assert delivery.last_error == "connection failed"
    assert SECRET_PATH not in delivery.last_error


def test_email_goes_through_django(eager, django_capture_on_commit_callbacks, settings):
    settings.ALERT_EMAIL_FROM = "noc@msp.example"
    channel("email", recipients="oncall@msp.example, boss@msp.example", include_groups=False)
    _problem(make_customer("Acme", fetched=None), django_capture_on_commit_callbacks)
    (message,) = mail.outbox
    assert message.subject == "[MSP dashboard] Down: Acme"
    assert message.to == ["oncall@msp.example", "boss@msp.example"]
    assert message.from_email == "noc@msp.example"
    assert "Acme: Up → Down" in message.body and "Customer: Acme" in message.body


def test_the_send_test_button_queues_a_test_and_the_log_shows_it(
    client, admin_user, listener, eager, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    hook = channel("teams", url=listener.hook(SECRET_PATH), name="Teams NOC")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/alerts/channels/{hook.pk}/test/")
    assert response.status_code == 302
    (request,) = listener.received
    assert request.json["attachments"][0]["content"]["body"][0]["text"] == (
        "Test alert from the MSP dashboard"
    )
    page = client.get(f"/alerts/channels/{hook.pk}/").content.decode()
    assert "Test message" in page and "HTTP 200" in page and "Sent" in page
    assert AuditEvent.objects.filter(action="alert.test").count() == 1


def test_channel_pages_need_the_admin_role_and_csrf(client, django_user_model):
    from django.test import Client

    from portals.accounts import user_set_role

    operator = django_user_model.objects.create_user("op")
    user_set_role(user=operator, role="Operator")
    client.force_login(operator)
    assert client.get("/alerts/channels/new/").status_code == 403
    assert client.get("/alerts/").status_code == 200  # the alerts page: every role
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(django_user_model.objects.create_superuser("root"))
    hook = channel("webhook", url="https://hooks.example.com/x/" + SECRET_PATH)
    assert strict.post(f"/alerts/channels/{hook.pk}/test/").status_code == 403


def test_the_webhook_url_is_a_secret(
    client, admin_user, listener, eager, caplog, django_capture_on_commit_callbacks
):
    """Stored encrypted; pages, the admin, logs, audit rows, task arguments and the
    delivery log show at most its last four characters."""
    caplog.set_level(logging.DEBUG)
    client.force_login(admin_user)
    url = listener.hook(SECRET_PATH)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/alerts/channels/new/",
            {
                "name": "Slack NOC",
                "kind": "slack",
                "enabled": "on",
                "url": url,
                "include_groups": "on",
                "notify_recovery": "on",
            },
        )
    assert response.status_code == 302, response.content.decode()[:2000]
    hook = AlertChannel.objects.get(name="Slack NOC")
    assert hook.url_last4 == url[-4:]
    listener.answer(500)
    from celery import Task

    published = []
    original = Task.apply_async

    def spy(self, args=None, kwargs=None, **options):
        published.append((self.name, args, kwargs))
        return original(self, args, kwargs, **options)

    Task.apply_async = spy
    try:
        _problem(make_customer("Acme", fetched=None), django_capture_on_commit_callbacks)
    finally:
        Task.apply_async = original
    assert published  # the delivery task and its retry: a delivery id, nothing else
    for name, args, kwargs in published:
        assert name == "alerts.tasks.deliver" and not kwargs
        assert len(args) == 1 and isinstance(args[0], int)
    pages = [
        client.get(path).content.decode()
        for path in (
            "/alerts/",
            f"/alerts/channels/{hook.pk}/",
            f"/alerts/channels/{hook.pk}/edit/",
            f"/admin/alerts/alertchannel/{hook.pk}/change/",
            "/admin/alerts/delivery/",
        )
    ]
    assert any(f"••••{url[-4:]}" in page for page in pages)
    with connection.cursor() as cursor:
        cursor.execute("SELECT url_ciphertext FROM alerts_alertchannel")
        (stored,) = cursor.fetchone()
    audit = " ".join(AuditEvent.objects.values_list("detail", flat=True))
    errors = " ".join(DeliveryAttempt.objects.values_list("error", flat=True))
    for where in (*pages, stored, caplog.text, audit, errors, str(published)):
        assert SECRET_PATH not in where
        assert "CANARYsecret" not in where


@pytest.mark.parametrize("command", ["rotate_token_keys", "rotate_alert_secrets"])
def test_channel_secrets_follow_a_key_rotation(settings, listener, command):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    old = settings.FIELD_ENCRYPTION_KEYS[0]
    hook = channel("slack", url=listener.hook(SECRET_PATH))
    new = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    out = io.StringIO()
    call_command(command, stdout=out)
    assert "rotated=1 failed=0" in out.getvalue()  # the one channel, re-encrypted
    settings.FIELD_ENCRYPTION_KEYS = [new]  # the old key is gone
    delivery = channel_send_test(channel=AlertChannel.objects.get(pk=hook.pk))
    assert delivery_attempt(delivery_id=delivery.pk).state == DeliveryState.SENT
    assert listener.received[0].path == f"/services/{SECRET_PATH}"
