"""Masking and scrubbing of secrets before they reach a message, a repr or a log line."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "••••"
MAX_UPSTREAM_TEXT = 200


def mask_secret(secret: str | None) -> str:
    """ "••••" plus the last 4 characters; only "••••" when shorter than 16 characters."""
    if not secret or len(secret) < 16:
        return MASK
    return MASK + secret[-4:]


def secret_forms(secret: str) -> set[str]:
    """The secret as sent or echoed: raw, URL-encoded and base64 forms."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    forms.add(base64.b64encode(raw).decode())
    forms.add(base64.urlsafe_b64encode(raw).decode())
    return forms


def scrub(text: object, secrets: Iterable[str | None]) -> str:
    """`text` as a single line of at most 200 characters with every secret form masked."""
    cleaned = " ".join(str(text).split())
    forms = {form for secret in secrets if secret for form in secret_forms(secret)}
    for form in sorted(forms, key=len, reverse=True):
        cleaned = cleaned.replace(form, MASK)
    return cleaned[:MAX_UPSTREAM_TEXT]
