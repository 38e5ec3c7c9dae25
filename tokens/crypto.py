"""Encryption at rest for stored secrets: MultiFernet over FIELD_ENCRYPTION_KEYS.

A stored value reads `v1:<key id>:<fernet token>`; the key id (a hash prefix of the key, never
the key) says which key wrote it, so rotation can find the rows still on an old key. Only the
`tokens` services call `decrypt`."""

import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

PREFIX = "v1"


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


class KeyConfigError(Exception):
    """FIELD_ENCRYPTION_KEYS is missing or malformed."""


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@lru_cache(maxsize=4)
def _keyring(keys: tuple[str, ...]) -> tuple[MultiFernet, str, frozenset[str]]:
    if not keys:
        raise KeyConfigError("FIELD_ENCRYPTION_KEYS is empty")
    try:
        fernets = [Fernet(k.encode()) for k in keys]
    except (ValueError, TypeError):
        raise KeyConfigError("FIELD_ENCRYPTION_KEYS holds a malformed key") from None
    return MultiFernet(fernets), key_id(keys[0]), frozenset(key_id(k) for k in keys)


def keyring() -> tuple[MultiFernet, str, frozenset[str]]:
    return _keyring(tuple(k.strip() for k in settings.FIELD_ENCRYPTION_KEYS if k.strip()))


def primary_key_id() -> str:
    return keyring()[1]


@sensitive_variables("plaintext")
def encrypt(plaintext: str) -> str:
    fernet, primary, _ = keyring()
    token = fernet.encrypt(plaintext.encode()).decode()
    return f"{PREFIX}:{primary}:{token}"


def _split(stored: str) -> tuple[str, str]:
    try:
        version, kid, token = stored.split(":", 2)
    except ValueError:
        raise DecryptionError("stored secret has no version prefix") from None
    if version != PREFIX:
        raise DecryptionError("stored secret has an unknown version")
    return kid, token


def decrypt(stored: str) -> str:
    _, token = _split(stored)
    fernet, _, _ = keyring()
    try:
        return fernet.decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("stored secret does not decrypt with the configured keys") from None


def needs_rotation(stored: str) -> bool:
    kid, _ = _split(stored)
    return kid != primary_key_id()


def rotate(stored: str) -> str:
    """Re-encrypt with the primary key; raises DecryptionError if no key opens it."""
    return encrypt(decrypt(stored))


@sensitive_variables("secret")
def fingerprint(secret: str) -> str:
    """A short, stable identifier of a secret for audit rows: never reversible."""
    return hashlib.sha256(b"msp-dashboard-fp:" + secret.encode()).hexdigest()[:12]


@sensitive_variables("secret")
def last4(secret: str) -> str:
    return secret[-4:] if len(secret) >= 16 else ""


def masked(last_four: str) -> str:
    return f"••••{last_four}" if last_four else "••••"
