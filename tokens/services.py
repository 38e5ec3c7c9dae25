"""Credential and audit services: the only code that decrypts a stored secret.

A decrypted secret is handed to the Site24x7 client for one call and never to a template, a
log line, a task argument, an exception message or an audit row."""

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from msp_dashboard.db import rows_for_ids
from msp_dashboard.site24x7 import (
    AuthError,
    LoginError,
    Site24x7Error,
    ThrottledError,
    TokenLimitError,
    TransientError,
    UnknownTokenError,
)
from msp_dashboard.site24x7.redact import scrub

from . import crypto
from . import errors as e
from .locks import exclusive
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

logger = logging.getLogger(__name__)

TOKEN_CAP = 10  # Site24x7 allows at most 10 live client-portal authtokens per customer account
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
    if customer is None and credential is not None and credential.customer_id:
        customer = credential.customer
    return AuditEvent.objects.create(
        actor_id=actor.pk if is_user else None,
        actor_name=actor.get_username() if is_user else "system",
        source_ip=ip or None,
        action=action,
        customer_id=customer.pk if customer else None,
        customer_name=customer.name if customer else "",
        credential_fingerprint=credential.fingerprint if credential else "",
        outcome=outcome,
        detail=detail[:300],
    )


# --- storing and reading secrets -------------------------------------------------------------


@sensitive_variables("secret")
def credential_store_secret(credential: Credential, secret: str) -> None:
    """Set (not save) the encrypted secret, its last four characters and fingerprint."""
    credential.secret_ciphertext = crypto.encrypt(secret)
    credential.secret_last4 = crypto.last4(secret)
    credential.fingerprint = crypto.fingerprint(secret)


@sensitive_variables("secret")
def credential_secret(credential: Credential) -> str:
    """The decrypted token (authtoken or OAuth refresh token). Raises crypto.DecryptionError,
    also when the ciphertext was copied from another row (its fingerprint does not match)."""
    secret = crypto.decrypt(credential.secret_ciphertext)
    if credential.fingerprint and crypto.fingerprint(secret) != credential.fingerprint:
        raise crypto.DecryptionError("stored secret does not belong to this credential")
    return secret


def credential_client_secret(credential: Credential) -> str:
    return crypto.decrypt(credential.client_secret_ciphertext)


# --- other apps' secrets (issue 9: alert webhook URLs) ----------------------------------------


@dataclass(frozen=True)
class SealedSecret:
    """What another app stores for a secret: the ciphertext, the last four characters (only
    for secrets of 16+ characters) and a fingerprint that ties the ciphertext to its row."""

    ciphertext: str
    last4: str
    fingerprint: str


@sensitive_variables("secret")
def secret_seal(*, secret: str) -> SealedSecret:
    """Encrypt a secret another app keeps (e.g. a Slack or Teams webhook URL, which embeds a
    token). Only `secret_open` reads it back; nothing else decrypts."""
    return SealedSecret(crypto.encrypt(secret), crypto.last4(secret), crypto.fingerprint(secret))


@sensitive_variables("secret")
def secret_open(*, ciphertext: str, fingerprint: str = "") -> str:
    """The plaintext of `secret_seal`, for the one outbound call that needs it. Raises
    crypto.DecryptionError, also when `fingerprint` is given and the ciphertext was copied
    from another row."""
    secret = crypto.decrypt(ciphertext)
    if fingerprint and crypto.fingerprint(secret) != fingerprint:
        raise crypto.DecryptionError("stored secret does not belong to this row")
    return secret


def secret_rotate(*, ciphertext: str) -> str | None:
    """The ciphertext re-encrypted with the primary key, or None when it already is (or is
    empty). Raises crypto.DecryptionError when no configured key opens it."""
    if not ciphertext or not crypto.needs_rotation(ciphertext):
        return None
    return crypto.rotate(ciphertext)


@sensitive_variables("secret", "client_secret")
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
    return credentials_for_customers([customer])[customer.pk]


def _active_authtokens(customer_ids: list[int]):
    return Credential.objects.filter(
        customer_id__in=customer_ids,
        kind=CredentialKind.PORTAL_AUTHTOKEN,
        state=CredentialState.ACTIVE,
    ).order_by("customer_id", "-created_at", "-id")


def credentials_for_customers(customers) -> dict[int, Credential | None]:
    """`credential_for_customer` of each customer (by pk), with one query for all."""
    customers = list(customers)
    legacy = [c.pk for c in customers if c.auth_generation != "oauth"]
    newest: dict[int, Credential] = {}
    if legacy:
        for credential in rows_for_ids(_active_authtokens, legacy):
            newest.setdefault(credential.customer_id, credential)
    return {c.pk: _identity(c) if c.auth_generation == "oauth" else newest.get(c.pk)
            for c in customers}  # fmt: skip


def _identity(customer) -> Credential | None:
    """An OAuth customer's MSP identity, when it is usable."""
    cred = customer.msp_credential
    return cred if cred and cred.state == CredentialState.ACTIVE else None


def credential_mark_invalid(*, credential: Credential, reason: str, customer=None) -> None:
    """Site24x7 rejected this credential (REL-12): stop using it until it changes; audited."""
    if _set_invalid(credential, reason):
        audit_record(
            action=AuditAction.CREDENTIAL_INVALID,
            outcome=AuditOutcome.FAILURE,
            customer=customer,
            credential=credential,
            detail=reason,
        )


def _set_invalid(credential: Credential, reason: str) -> bool:
    """Mark an active credential invalid; False when it was not active (nothing changed)."""
    updated = Credential.objects.filter(pk=credential.pk, state=CredentialState.ACTIVE).update(
        state=CredentialState.INVALID, state_reason=reason[:300], invalid_since=timezone.now()
    )
    if updated:
        credential.state = CredentialState.INVALID
        credential.state_reason = reason[:300]
    return bool(updated)


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


@sensitive_variables("token", "rejected")
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
    while True:
        with exclusive(f"{key}:mint", timeout=30) as held:
            if held:
                token = _cached_access_token(key)
                if token and token != rejected:
                    return token
                return _mint_and_cache(credential, key)
        time.sleep(0.05)
        token = _cached_access_token(key)
        if token and token != rejected:
            return token
        if time.monotonic() > deadline:
            raise TransientError("timed out waiting for another worker to mint an access token")


@sensitive_variables("minted")
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


# --- credential actions for token managers (views, admin, commands call these) --------------

LIVE_STATES = (CredentialState.ACTIVE, CredentialState.INVALID)


@contextmanager
def _exclusive(key: str, message: str):
    """One action at a time on one object, across processes."""
    with exclusive(f"tokens:{key}", timeout=60) as held:
        if not held:
            raise e.CredentialError(message, code=e.BUSY)
        yield


def _upstream_error(
    exc: Site24x7Error, *, doing: str, secrets=(), ambiguous: bool = False
) -> e.CredentialError:
    """A safe, human message for an upstream failure, saying what to do next."""
    detail = scrub(exc, secrets)
    if isinstance(exc, LoginError):
        return e.CredentialError(
            "Site24x7 refused the login: wrong email or password, or the user is not a member "
            "of this customer's client portal. Check both and try again.",
            code=e.LOGIN,
        )
    if isinstance(exc, TokenLimitError):
        return e.CredentialError(
            f"Site24x7 refused: this customer account already has {TOKEN_CAP} active "
            "authtokens (the maximum), more than the dashboard knows about. Delete an unused "
            "one in the customer's client portal (or import it here and revoke it), then try "
            "again.",
            code=e.UPSTREAM_CAP,
        )
    if isinstance(exc, UnknownTokenError):
        return e.CredentialError(
            "Site24x7 does not know this token (already deleted there, or never valid). You "
            "may forget it here: the stored secret is destroyed and the audit trail is kept.",
            code=e.UNKNOWN_TOKEN,
        )
    if isinstance(exc, AuthError):
        return e.CredentialError(
            f"Site24x7 rejected the credential ({detail}). Paste a replacement or reconnect.",
            code=e.REJECTED,
        )
    lost = (
        " The answer was lost, so a token may have been created anyway: if this keeps "
        "happening, check the customer's authtokens in Site24x7."
        if ambiguous
        else ""
    )
    if isinstance(exc, ThrottledError):
        wait = f"in about {int(exc.retry_after)} seconds" if exc.retry_after else "in a minute"
        return e.CredentialError(
            f"Site24x7 is limiting requests while {doing}. Nothing changed here; try again {wait}.",
            code=e.THROTTLED,
        )
    if isinstance(exc, TransientError):
        return e.CredentialError(
            f"Site24x7 could not be reached or failed while {doing} ({detail}). Nothing changed "
            f"here; try again in a few minutes.{lost}",
            code=e.UNREACHABLE,
        )
    return e.CredentialError(
        f"Site24x7 gave an unexpected answer while {doing} ({detail}). Nothing changed here; "
        f"try again, and report it if it persists.{lost}",
        code=e.UPSTREAM,
    )


def _fail(
    err: e.CredentialError, *, action: str, actor, ip, customer=None, credential=None, note=""
):
    """Audit a failed attempt and hand back the error to raise."""
    detail = f"{err.code}: {note}" if note else err.code
    audit_record(
        action=action,
        outcome=AuditOutcome.FAILURE,
        actor=actor,
        ip=ip,
        customer=customer,
        credential=credential,
        detail=detail,
    )
    logger.info("tokens: %s failed (%s)", action, err.code)
    return err


def _require_legacy(customer, *, need_portal: bool) -> None:
    if customer is None or customer.auth_generation != "legacy":
        raise e.CredentialError(
            "This customer is read through OAuth, not a client-portal authtoken.", code=e.STATE
        )
    if need_portal and not customer.portal_id:
        raise e.CredentialError(
            "This customer has no Site24x7 portal id yet; sync customers first.", code=e.STATE
        )


def credential_live_count(*, customer) -> int:
    """Authtokens of this customer that may still be live at Site24x7 (not revoked here).

    Invalid ones count too: Site24x7 may still hold them against its cap of 10."""
    return Credential.objects.filter(
        customer=customer, kind=CredentialKind.PORTAL_AUTHTOKEN, state__in=LIVE_STATES
    ).count()


@sensitive_variables("password", "token")
def credential_create(
    *, customer, email: str, password: str, label: str = "", actor=None, ip: str | None = None
) -> Credential:
    """Create a client-portal authtoken through the accounts API and store it.

    Refuses before calling Site24x7 when the customer is at the cap. The password is used for
    this one call only: never stored, logged, audited or put in an error message."""
    _require_legacy(customer, need_portal=True)
    crypto.primary_key_id()  # a broken key must fail here, not after Site24x7 made a token
    action = AuditAction.CREDENTIAL_CREATE
    busy = "Another authtoken is being created for this customer; wait a moment and reload."
    with _exclusive(f"create:{customer.pk}", busy):
        live = credential_live_count(customer=customer)
        if live >= TOKEN_CAP:
            err = e.CredentialError(
                f"{customer.name} already has {live} live authtokens, the Site24x7 maximum of "
                f"{TOKEN_CAP}. Revoke one (an older one, once a newer one tests OK) before "
                "creating another.",
                code=e.CAP,
            )
            raise _fail(err, action=action, actor=actor, ip=ip, customer=customer)
        client = get_client(customer.data_centre)
        try:
            token = client.create_portal_authtoken(
                portal_id=customer.portal_id,
                email=email,
                password=password,
                desc=_token_description(label),
            )
        except Site24x7Error as exc:
            err = _upstream_error(
                exc, doing="creating the authtoken", secrets=(password,), ambiguous=True
            )
            note = f"login as {email}: {scrub(exc, (password,))}"
            raise _fail(
                err, action=action, actor=actor, ip=ip, customer=customer, note=note
            ) from None
        return credential_import(
            kind=CredentialKind.PORTAL_AUTHTOKEN,
            secret=token,
            customer=customer,
            data_centre=customer.data_centre,
            label=label,
            actor=actor,
            ip=ip,
            origin=CredentialOrigin.CREATED,
        )


def _token_description(label: str) -> str:
    return " ".join(f"msp_dashboard {label}".split())[:60]


@sensitive_variables("secret")
def credential_paste(
    *,
    kind: str,
    secret: str,
    customer=None,
    data_centre: str = "US",
    label: str = "",
    actor=None,
    ip: str | None = None,
) -> Credential:
    """Store a pasted legacy authtoken: a customer's portal authtoken, or an MSP authtoken."""
    secret = secret.strip()
    if kind == CredentialKind.PORTAL_AUTHTOKEN:
        _require_legacy(customer, need_portal=False)
        data_centre = customer.data_centre
    elif kind == CredentialKind.MSP_AUTHTOKEN:
        customer = None
    else:
        raise ValueError(f"paste does not store {kind} credentials; use credential_oauth_connect")
    duplicate = Credential.objects.filter(
        fingerprint=crypto.fingerprint(secret), state__in=LIVE_STATES
    ).exists()
    if duplicate:
        err = e.CredentialError("This token is already stored here.", code=e.DUPLICATE)
        action = AuditAction.CREDENTIAL_IMPORT
        raise _fail(err, action=action, actor=actor, ip=ip, customer=customer)
    return credential_import(
        kind=kind,
        secret=secret,
        customer=customer,
        data_centre=data_centre,
        label=label,
        actor=actor,
        ip=ip,
    )


@sensitive_variables("client_secret", "grant_code", "tokens")
def credential_oauth_connect(
    *,
    client_id: str,
    client_secret: str,
    grant_code: str,
    data_centre: str = "US",
    label: str = "",
    actor=None,
    ip: str | None = None,
) -> Credential:
    """Exchange a Self Client grant code for a refresh token and store the identity.

    The access token that comes with it seeds the shared cache, saving one mint."""
    action = AuditAction.OAUTH_CONNECT
    crypto.primary_key_id()  # fail before the one-time grant code is spent
    client = get_client(data_centre)
    try:
        tokens = client.exchange_grant_code(
            client_id=client_id, client_secret=client_secret, code=grant_code
        )
    except AuthError as exc:
        err = e.CredentialError(
            "Site24x7 refused the grant code or the client id/secret. A grant code works once "
            "and expires within minutes: generate a new one in the Self Client of the API "
            "console of this data centre and paste it straight away.",
            code=e.REJECTED,
        )
        note = f"client {client_id}: {scrub(exc, (client_secret, grant_code))}"
        raise _fail(err, action=action, actor=actor, ip=ip, note=note) from None
    except Site24x7Error as exc:
        err = _upstream_error(exc, doing="exchanging the grant code", secrets=(client_secret,))
        note = scrub(exc, (client_secret, grant_code))
        raise _fail(err, action=action, actor=actor, ip=ip, note=note) from None
    if not tokens.refresh_token:
        err = e.CredentialError(
            "Site24x7 returned no refresh token for this grant code; generate the code with "
            "offline access and try again.",
            code=e.UPSTREAM,
        )
        raise _fail(err, action=action, actor=actor, ip=ip)
    credential = credential_import(
        kind=CredentialKind.OAUTH,
        secret=tokens.refresh_token,
        data_centre=data_centre,
        label=label,
        client_id=client_id,
        client_secret=client_secret,
        actor=actor,
        ip=ip,
        origin=CredentialOrigin.CONNECTED,
    )
    if tokens.access_token:
        ttl = max(60, tokens.expires_in - ACCESS_TOKEN_MARGIN)
        cache.set(_access_key(credential), crypto.encrypt(tokens.access_token), timeout=ttl)
    return credential


def _destroy(credential: Credential, reason: str) -> None:
    """Mark revoked and destroy the ciphertext; last four, fingerprint and row stay (audit)."""
    Credential.objects.filter(pk=credential.pk).update(
        state=CredentialState.REVOKED,
        state_reason=reason[:300],
        revoked_at=timezone.now(),
        secret_ciphertext="",
        client_secret_ciphertext="",
    )
    cache.delete(_access_key(credential))
    credential.refresh_from_db()


@sensitive_variables("secret")
def _revoke_upstream(credential: Credential) -> str:
    """Delete the token at Site24x7; returns a note for the audit row."""
    if credential.kind == CredentialKind.MSP_AUTHTOKEN:
        return "removed here only: delete an MSP authtoken in Zoho Accounts too"
    secret = credential_secret(credential)
    client = get_client(credential.data_centre)
    if credential.kind == CredentialKind.OAUTH:
        client.revoke_refresh_token(refresh_token=secret)
        return "refresh token revoked at Site24x7"
    customer = credential.customer
    _require_legacy(customer, need_portal=True)
    client.delete_portal_authtoken(portal_id=customer.portal_id, authtoken=secret)
    return "authtoken deleted at Site24x7"


def credential_revoke(*, credential: Credential, actor=None, ip: str | None = None) -> Credential:
    """Delete the credential at Site24x7 (OAuth: revoke the refresh token), then mark it
    revoked and destroy its ciphertext. On failure it stays as it is and the error says why;
    when Site24x7 does not know the token it is marked invalid, so it may be forgotten."""
    action = (
        AuditAction.OAUTH_DISCONNECT
        if credential.kind == CredentialKind.OAUTH
        else AuditAction.CREDENTIAL_REVOKE
    )
    if credential.state == CredentialState.REVOKED:
        raise e.CredentialError("This credential is already revoked.", code=e.STATE)
    audit = {"action": action, "actor": actor, "ip": ip, "credential": credential}
    with _exclusive(f"credential:{credential.pk}", "This credential is busy; try again."):
        try:
            note = _revoke_upstream(credential)
        except crypto.DecryptionError:
            _set_invalid(credential, "the stored secret does not decrypt with the configured keys")
            err = e.CredentialError(
                "The stored secret does not decrypt with the configured keys (was a key removed "
                "before rotation finished?), so it cannot be revoked at Site24x7. Delete it "
                "there by hand, then forget it here.",
                code=e.UNUSABLE,
            )
            raise _fail(err, **audit) from None
        except e.CredentialError as err:
            raise _fail(err, **audit) from None
        except UnknownTokenError as exc:
            _set_invalid(credential, "Site24x7 does not know this token (seen when revoking)")
            err = _upstream_error(exc, doing="revoking")
            raise _fail(err, **audit, note="marked invalid") from None
        except Site24x7Error as exc:
            err = _upstream_error(exc, doing="revoking")
            raise _fail(err, **audit, note=scrub(exc, ())) from None
        who = actor.get_username() if getattr(actor, "is_authenticated", False) else "system"
        _destroy(credential, f"revoked by {who}")
        audit_record(**audit, detail=note)
    return credential


def credential_forget(*, credential: Credential, actor=None, ip: str | None = None) -> Credential:
    """Destroy the stored secret of a credential Site24x7 rejected or does not know, without
    calling Site24x7. The row stays (revoked) for the audit trail."""
    action = AuditAction.CREDENTIAL_FORGET
    if credential.state != CredentialState.INVALID:
        err = e.CredentialError(
            "Only a credential that Site24x7 rejected or does not know can be forgotten; "
            "revoke this one instead.",
            code=e.STATE,
        )
        raise _fail(err, action=action, actor=actor, ip=ip, credential=credential)
    reason = f"forgotten here ({credential.state_reason})" if credential.state_reason else ""
    _destroy(credential, reason or "forgotten here")
    audit_record(action=action, actor=actor, ip=ip, credential=credential, detail=reason)
    return credential


@sensitive_variables("secret", "token")
def _probe(credential: Credential) -> None:
    """One cheap authenticated call with this credential."""
    client = get_client(credential.data_centre)
    if credential.kind == CredentialKind.MSP_AUTHTOKEN:
        client.list_portals(msp_authtoken=credential_secret(credential))
    elif credential.kind == CredentialKind.PORTAL_AUTHTOKEN:
        customer = credential.customer
        if customer is None or not customer.zaid:
            raise e.CredentialError("the customer has no zaid yet; sync customers first")
        client.monitor_groups_status(authtoken=credential_secret(credential), zaid=customer.zaid)
    else:
        token = oauth_access_token(credential=credential)
        try:
            client.list_msp_customers(access_token=token)
        except AuthError:
            token = oauth_access_token(credential=credential, rejected=token)
            client.list_msp_customers(access_token=token)


def credential_test(*, credential: Credential, actor=None, ip: str | None = None) -> Credential:
    """Make one cheap call with the credential and record the outcome on it (and audit).

    Rejected → marked invalid. Accepted while marked invalid → active again: Site24x7 has just
    accepted it, so the earlier rejection no longer holds (e.g. a transient 401)."""
    if credential.state == CredentialState.REVOKED:
        raise e.CredentialError("A revoked credential cannot be tested.", code=e.STATE)
    error = ""
    with _exclusive(f"credential:{credential.pk}", "This credential is busy; try again."):
        try:
            _probe(credential)
        except crypto.DecryptionError:
            error = "the stored secret does not decrypt with the configured keys"
        except e.CredentialError as exc:
            error = exc.message
        except AuthError as exc:
            error = f"rejected by Site24x7: {scrub(exc, ())}"
            _set_invalid(credential, error)
        except Site24x7Error as exc:
            error = f"{type(exc).__name__}: {scrub(exc, ())}"
        ok = not error
        Credential.objects.filter(pk=credential.pk).update(
            last_tested_at=timezone.now(), last_test_ok=ok, last_test_error=error[:300]
        )
        restored = ok and Credential.objects.filter(
            pk=credential.pk, state=CredentialState.INVALID
        ).update(state=CredentialState.ACTIVE, state_reason="", invalid_since=None)
    credential.refresh_from_db()
    audit_record(
        action=AuditAction.CREDENTIAL_TEST,
        outcome=AuditOutcome.SUCCESS if ok else AuditOutcome.FAILURE,
        actor=actor,
        ip=ip,
        credential=credential,
        detail="restored to active" if restored else error,
    )
    return credential


@sensitive_variables("secret", "client_secret")
def credential_replace_secret(
    *,
    credential: Credential,
    secret: str = "",
    client_secret: str = "",
    actor=None,
    ip: str | None = None,
) -> Credential:
    """Store a pasted replacement (admin "leave blank to keep"); the credential is active
    again. Blank values keep what is stored."""
    secret, client_secret = secret.strip(), client_secret.strip()
    if not secret and not client_secret:
        return credential
    cache.delete(_access_key(credential))
    changed = []
    if secret:
        credential_store_secret(credential, secret)
        changed.append("secret")
    if client_secret:
        credential.client_secret_ciphertext = crypto.encrypt(client_secret)
        changed.append("client secret")
    credential.state = CredentialState.ACTIVE
    credential.state_reason = ""
    credential.invalid_since = None
    credential.revoked_at = None
    credential.save()
    audit_record(
        action=AuditAction.CREDENTIAL_UPDATE,
        actor=actor,
        ip=ip,
        credential=credential,
        detail=" and ".join(changed) + " replaced",
    )
    return credential


# --- key rotation (SEC-08) -------------------------------------------------------------------

CIPHERTEXT_FIELDS = ("secret_ciphertext", "client_secret_ciphertext")


OTHER_SECRET_STORES: dict[str, Callable[[], tuple[int, int]]] = {}
"""Other apps' encrypted secrets (name -> rotate(): (rotated, failed)), registered in their
AppConfig.ready with `secret_store_register`, so `rotate_token_keys` re-encrypts them too."""


def secret_store_register(name: str, rotate: Callable[[], tuple[int, int]]) -> None:
    OTHER_SECRET_STORES[name] = rotate


@dataclass(frozen=True)
class RotationResult:
    rotated: int
    failed: int
    skipped: int


def _rotate_row(credential: Credential) -> str:
    """One of rotated, skipped (already on the primary key, or empty) or failed."""
    new = {}
    try:
        for field in CIPHERTEXT_FIELDS:
            stored = getattr(credential, field)
            if stored and crypto.needs_rotation(stored):
                new[field] = crypto.rotate(stored)
    except crypto.DecryptionError:
        return "failed"
    for field, value in new.items():
        setattr(credential, field, value)
    return "rotated" if new else "skipped"


def credential_rotate_keys(
    *, batch_size: int = 500, actor=None, ip: str | None = None
) -> RotationResult:
    """Re-encrypt every ciphertext with the primary key of FIELD_ENCRYPTION_KEYS.

    Idempotent (rows already on the primary key are skipped), batched (one transaction per
    batch, rows locked while rewritten) and resumable (a stopped run is simply run again).
    Writes one audit event per run. Cached OAuth access tokens are not rewritten: they expire
    within an hour, and one that no key opens any more is treated as missing and re-minted."""
    counts = {"rotated": 0, "failed": 0, "skipped": 0}
    last_pk = 0
    while True:
        with transaction.atomic():
            batch = list(
                Credential.objects.select_for_update()
                .filter(pk__gt=last_pk)
                .order_by("pk")
                .only("pk", *CIPHERTEXT_FIELDS)[:batch_size]
            )
            if not batch:
                break
            last_pk = batch[-1].pk
            changed = []
            for credential in batch:
                outcome = _rotate_row(credential)
                counts[outcome] += 1
                if outcome == "rotated":
                    changed.append(credential)
            Credential.objects.bulk_update(changed, CIPHERTEXT_FIELDS)
    result = RotationResult(**counts)
    audit_record(
        action=AuditAction.KEY_ROTATION,
        outcome=AuditOutcome.FAILURE if result.failed else AuditOutcome.SUCCESS,
        actor=actor,
        ip=ip,
        detail=(
            f"rotated={result.rotated} failed={result.failed} skipped={result.skipped} "
            f"primary key id {crypto.primary_key_id()}"
        ),
    )
    logger.info("tokens: key rotation rotated=%s failed=%s", result.rotated, result.failed)
    return result
