"""Credential and audit services: the only code that decrypts a stored secret.

A decrypted secret is handed to the Site24x7 client for one call and never to a template, a
log line, a task argument, an exception message or an audit row."""

import time

from django.core.cache import cache
from django.utils import timezone

from msp_dashboard.site24x7 import AuthError, TransientError

from . import crypto
from .models import (
    AuditAction,
    AuditEvent,
    AuditOutcome,
    Credential,
    CredentialKind,
    CredentialOrigin,
    CredentialState,
)
from .upstream import get_client

ACCESS_TOKEN_MARGIN = 300  # seconds before expiry when a cached access token is replaced
LOCK_WAIT = 15.0


# --- audit ---------------------------------------------------------------------------------


def audit_record(
    *,
    action: str,
    outcome: str = AuditOutcome.SUCCESS,
    actor=None,
    ip: str | None = None,
    customer=None,
    credential: Credential | None = None,
    detail: str = "",
) -> AuditEvent:
    """Append one audit event. `detail` must already be free of secrets (it is short text)."""
    is_user = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEvent.objects.create(
        actor_id=actor.pk if is_user else None,
        actor_name=actor.get_username() if is_user else "system",
        source_ip=ip or None,
        action=action,
        customer_id=customer.pk if customer else (credential.customer_id if credential else None),
        customer_name=customer.name if customer else "",
        credential_fingerprint=credential.fingerprint if credential else "",
        outcome=outcome,
        detail=detail[:300],
    )


# --- storing and reading secrets -------------------------------------------------------------


def credential_store_secret(credential: Credential, secret: str) -> None:
    """Set (not save) the encrypted secret, its last four characters and fingerprint."""
    credential.secret_ciphertext = crypto.encrypt(secret)
    credential.secret_last4 = crypto.last4(secret)
    credential.fingerprint = crypto.fingerprint(secret)


def credential_secret(credential: Credential) -> str:
    """The decrypted token (authtoken or OAuth refresh token). Raises crypto.DecryptionError."""
    return crypto.decrypt(credential.secret_ciphertext)


def credential_client_secret(credential: Credential) -> str:
    return crypto.decrypt(credential.client_secret_ciphertext)


def credential_import(
    *,
    kind: str,
    secret: str,
    customer=None,
    data_centre: str = "US",
    label: str = "",
    client_id: str = "",
    client_secret: str = "",
    actor=None,
    ip: str | None = None,
    origin: str = CredentialOrigin.IMPORTED,
) -> Credential:
    """Store a credential someone pasted (or that the demo or .env provides)."""
    credential = Credential(
        kind=kind,
        customer=customer,
        data_centre=data_centre,
        label=label,
        client_id=client_id,
        origin=origin,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    credential_store_secret(credential, secret)
    if client_secret:
        credential.client_secret_ciphertext = crypto.encrypt(client_secret)
    credential.save()
    action = (
        AuditAction.OAUTH_CONNECT if kind == CredentialKind.OAUTH else AuditAction.CREDENTIAL_IMPORT
    )
    if origin == CredentialOrigin.CREATED:
        action = AuditAction.CREDENTIAL_CREATE
    audit_record(action=action, actor=actor, ip=ip, customer=customer, credential=credential)
    return credential


def credential_for_customer(customer) -> Credential | None:
    """The active credential a refresh of this customer uses, or None.

    Legacy: the newest active portal authtoken of the customer (an older one may still be
    active during rotation). OAuth: the MSP identity that reads this customer."""
    if customer.auth_generation == "oauth":
        cred = customer.msp_credential
        return cred if cred and cred.state == CredentialState.ACTIVE else None
    return (
        Credential.objects.filter(
            customer=customer, kind=CredentialKind.PORTAL_AUTHTOKEN, state=CredentialState.ACTIVE
        )
        .order_by("-created_at", "-id")
        .first()
    )


def credential_mark_invalid(*, credential: Credential, reason: str, customer=None) -> None:
    """Site24x7 rejected this credential (REL-12): stop using it until it changes; audited."""
    updated = Credential.objects.filter(pk=credential.pk, state=CredentialState.ACTIVE).update(
        state=CredentialState.INVALID, state_reason=reason[:300], invalid_since=timezone.now()
    )
    credential.state = CredentialState.INVALID
    if updated:
        audit_record(
            action=AuditAction.CREDENTIAL_INVALID,
            outcome=AuditOutcome.FAILURE,
            customer=customer,
            credential=credential,
            detail=reason,
        )


# --- OAuth access tokens: cached, shared by every worker, minted behind a lock (REL-14) -----


def _access_key(credential: Credential) -> str:
    return f"oauth-access:{credential.pk}:{credential.fingerprint}"


def _cached_access_token(key: str) -> str | None:
    stored = cache.get(key)
    if not stored:
        return None
    try:
        return crypto.decrypt(stored)
    except crypto.DecryptionError:
        return None


def oauth_access_token(*, credential: Credential, rejected: str | None = None) -> str:
    """A valid access token for this OAuth identity.

    Served from the shared cache (encrypted there too); minted at most once at a time across
    all workers. Pass `rejected` after Site24x7 refused a token: it is replaced unless another
    worker has already replaced it."""
    key = _access_key(credential)
    token = _cached_access_token(key)
    if token and token != rejected:
        return token
    deadline = time.monotonic() + LOCK_WAIT
    while not cache.add(f"{key}:lock", "1", timeout=30):
        time.sleep(0.05)
        token = _cached_access_token(key)
        if token and token != rejected:
            return token
        if time.monotonic() > deadline:
            raise TransientError("timed out waiting for another worker to mint an access token")
    try:
        token = _cached_access_token(key)
        if token and token != rejected:
            return token
        return _mint_and_cache(credential, key)
    finally:
        cache.delete(f"{key}:lock")


def _mint_and_cache(credential: Credential, key: str) -> str:
    client = get_client(credential.data_centre)
    try:
        minted = client.mint_access_token(
            client_id=credential.client_id,
            client_secret=credential_client_secret(credential),
            refresh_token=credential_secret(credential),
        )
    except AuthError as exc:
        credential_mark_invalid(credential=credential, reason=str(exc))
        raise
    ttl = max(60, minted.expires_in - ACCESS_TOKEN_MARGIN)
    cache.set(key, crypto.encrypt(minted.token), timeout=ttl)
    return minted.token
