"""What an alert says, and how each channel kind carries it.

- Webhook: our own JSON (`version` 1), signed with HMAC-SHA256 when the channel has a signing
  secret (`X-MSP-Signature: sha256=<hex>` over the raw body), `X-MSP-Delivery` for dedup.
- Slack incoming webhook: `text` (the notification fallback) and Block Kit `blocks`.
- Microsoft Teams: a `message` with one Adaptive Card attachment (what Teams workflows and
  incoming webhooks accept).
- Email: a plain-text message through Django's email backend.

A message names customers, groups and statuses, never a secret: the channel's URL is decrypted
only to be handed to `requests` (tokens.services.secret_open), and error text is built from the
HTTP status and a scrubbed, shortened response body, never from an exception that could
carry the URL."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import EmailMessage
from django.urls import reverse
from django.utils import timezone

from msp_dashboard.site24x7 import Status
from msp_dashboard.site24x7.redact import scrub

from .models import AlertEvent, EventKind

USER_AGENT = "msp-dashboard-alerts/1"
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
COLOURS = {"bad": "#d92d20", "warn": "#eea00b", "good": "#16a34a", "info": "#2563eb"}


def status_word(code: int | None, *, customer_level: bool = False) -> str:
    if code is None:
        return "not observed"
    try:
        status = Status(code)
    except ValueError:
        status = Status.UNKNOWN
    if status is Status.UNKNOWN and customer_level:
        return "Stale (no fresh data)"
    return status.label


@dataclass
class Message:
    title: str
    text: str
    tone: str  # bad | warn | good | info
    facts: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

    @property
    def colour(self) -> str:
        return COLOURS[self.tone]


def _link(event: AlertEvent) -> str:
    base = settings.DASHBOARD_URL
    if not base:
        return ""
    if event.customer_id:
        return base + reverse("portals:customer", args=[event.customer_id])
    return base + reverse("portals:grid")


def _subject(event: AlertEvent) -> str:
    return f"{event.customer_name} / {event.group_name}" if event.group_id else event.customer_name


def _tone(event: AlertEvent) -> str:
    if event.kind in (EventKind.RECOVERY, EventKind.UPSTREAM_UP, EventKind.SETTLED):
        return "good"
    if event.kind in (EventKind.TEST,):
        return "info"
    if event.kind in (EventKind.FLAPPING, EventKind.CHANGE):
        return "warn"
    if event.to_status in (Status.TROUBLE, Status.CONFIG_ERROR):
        return "warn"
    return "bad"


def compose(event: AlertEvent) -> Message:
    """The words of one event, shared by every channel kind."""
    customer_level = not event.group_id
    new = status_word(event.to_status, customer_level=customer_level)
    old = status_word(event.from_status, customer_level=customer_level)
    when = timezone.localtime(event.at)
    at = f"{when:%Y-%m-%d %H:%M:%S} {when.tzname()}"
    subject = _subject(event)
    kind = event.kind
    if kind == EventKind.TEST:
        title, text = "Test alert from the MSP dashboard", event.detail or "This channel works."
    elif kind == EventKind.UPSTREAM_DOWN:
        title = f"Site24x7 API in data centre {event.data_centre} is failing"
        text = event.detail
    elif kind == EventKind.UPSTREAM_UP:
        title = f"Site24x7 API in data centre {event.data_centre} recovered"
        text = event.detail
    elif kind == EventKind.FLAPPING:
        title, text = f"Flapping: {subject}", event.detail
    elif kind == EventKind.SETTLED:
        title, text = f"Settled: {subject} is {new}", event.detail
    elif kind == EventKind.RECOVERY:
        title, text = f"Recovered: {subject} is {new}", f"{subject}: {old} → {new}"
    else:
        verb = new if kind == EventKind.PROBLEM else f"now {new}"
        title, text = f"{verb}: {subject}", f"{subject}: {old} → {new}"
        if event.detail:
            text = f"{text} ({event.detail})"
    facts = []
    if event.customer_name:
        facts.append(("Customer", event.customer_name))
    if event.group_name:
        facts.append(("Monitor group", event.group_name))
    if event.from_status is not None or event.to_status is not None:
        facts.append(("Status", f"{old} → {new}"))
    if event.data_centre:
        facts.append(("Data centre", event.data_centre))
    facts.append(("At", at))
    if event.hold > 1:
        facts.append(("Held for", f"{event.hold} refreshes"))
    return Message(title, text, _tone(event), facts, _link(event))


# --- payloads ------------------------------------------------------------------------------------


def _status_json(code: int | None) -> dict | None:
    if code is None:
        return None
    return {"code": code, "label": status_word(code)}


def webhook_payload(event: AlertEvent, message: Message, delivery_id: int) -> dict:
    return {
        "version": 1,
        "delivery_id": delivery_id,
        "event_id": event.pk,
        "kind": event.kind,
        "title": message.title,
        "text": message.text,
        "at": event.at.isoformat(),
        "customer": (
            {"id": event.customer_id, "name": event.customer_name, "data_centre": event.data_centre}
            if event.customer_id
            else None
        ),
        "group": {"id": event.group_id, "name": event.group_name} if event.group_id else None,
        "data_centre": event.data_centre or None,
        "from_status": _status_json(event.from_status),
        "to_status": _status_json(event.to_status),
        "hold_refreshes": event.hold,
        "url": message.url or None,
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: Message) -> dict:
    emoji = {"bad": ":red_circle:", "warn": ":warning:", "good": ":large_green_circle:"}.get(
        message.tone, ":information_source:"
    )
    fields = [
        {"type": "mrkdwn", "text": f"*{_slack_escape(k)}*\n{_slack_escape(v)}"}
        for k, v in message.facts[:10]
    ]
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(message.text)}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if message.url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in the dashboard"},
                        "url": message.url,
                    }
                ],
            }
        )
    return {"text": f"{emoji} {message.title}: {message.text}", "blocks": blocks}


def teams_payload(message: Message) -> dict:
    colour = {"bad": "attention", "warn": "warning", "good": "good"}.get(message.tone, "accent")
    card: dict = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            {
                "type": "TextBlock",
                "size": "Medium",
                "weight": "Bolder",
                "color": colour,
                "text": message.title,
                "wrap": True,
            },
            {"type": "TextBlock", "text": message.text, "wrap": True},
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in message.facts]},
        ],
    }
    if message.url:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open in the dashboard", "url": message.url}
        ]
    return {
        "type": "message",
        "summary": message.title,
        "attachments": [
            {
                "contentType": ADAPTIVE_CARD,
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def email_parts(message: Message) -> tuple[str, str]:
    subject = f"[MSP dashboard] {message.title}"[:200]
    lines = [message.title, "", message.text, ""]
    lines += [f"{k}: {v}" for k, v in message.facts]
    if message.url:
        lines += ["", message.url]
    return subject, "\n".join(lines) + "\n"


# --- transports ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    ok: bool
    http_status: int | None = None
    error: str = ""
    transient: bool = False
    retry_after: float | None = None
    duration: float = 0.0


def _retry_after(response) -> float | None:
    value = (response.headers.get("Retry-After") or "").strip()
    try:
        return max(0.0, min(float(value), 3600.0)) if value else None
    except ValueError:
        return None


def _body_text(response, url: str) -> str:
    """At most 120 characters of the answer, one line, without the URL or its parts."""
    try:
        text = response.text
    except Exception:
        return ""
    parts = urlsplit(url)
    secrets = [url, parts.path, parts.query, *[p for p in parts.path.split("/") if len(p) >= 8]]
    return scrub(text, secrets)[:120]


def send_json(url: str, payload: dict, *, headers: dict | None = None, secret: str = ""):
    """POST `payload` as JSON; never follows redirects; transient: timeouts, connection
    errors, 408, 429 (Retry-After honoured) and 5xx."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    sent_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
    if secret:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        sent_headers["X-MSP-Signature"] = f"sha256={digest}"
    timeout = (settings.ALERT_CONNECT_TIMEOUT, settings.ALERT_READ_TIMEOUT)
    started = time.monotonic()
    try:
        response = requests.post(
            url, data=body, headers=sent_headers, timeout=timeout, allow_redirects=False
        )
    except requests.Timeout:
        return SendResult(False, error="timed out", transient=True, duration=_since(started))
    except requests.ConnectionError:
        return SendResult(
            False, error="connection failed", transient=True, duration=_since(started)
        )
    except requests.RequestException as exc:
        # The class name only: requests' messages may quote the URL.
        return SendResult(False, error=f"request failed ({type(exc).__name__})", duration=0.0)
    duration = _since(started)
    status = response.status_code
    if 200 <= status < 300:
        return SendResult(True, status, duration=duration)
    detail = _body_text(response, url)
    error = f"HTTP {status}" + (f": {detail}" if detail else "")
    transient = status in (408, 429) or status >= 500
    return SendResult(False, status, error, transient, _retry_after(response), duration)


def send_email(recipients: list[str], subject: str, body: str) -> SendResult:
    import smtplib

    if not recipients:
        return SendResult(False, error="no recipients")
    started = time.monotonic()
    try:
        EmailMessage(subject, body, settings.ALERT_EMAIL_FROM, recipients).send()
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        return SendResult(False, error=f"refused by the mail server ({type(exc).__name__})")
    except (smtplib.SMTPException, OSError) as exc:
        return SendResult(
            False,
            error=f"mail server error ({type(exc).__name__})",
            transient=True,
            duration=_since(started),
        )
    return SendResult(True, duration=_since(started))


def _since(started: float) -> float:
    return time.monotonic() - started
