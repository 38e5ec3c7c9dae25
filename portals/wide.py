"""The MSP-wide refresh source (issue 10): for a large MSP, one call per identity and round.

With SITE24X7_OAUTH_REFRESH_SOURCE=msp_wide, a round (`customers_enqueue_due`) enqueues one
`refresh_wide(credential_id, round_id)` per MSP identity instead of one `refresh_customer` per
OAuth customer. The task leases every customer that round claimed for the identity, makes one
`GET /api/msp/customers/monitors/status`, and stores each customer's groups through the same
store as a per-customer refresh (`customers_store_fetched`, 100 customers per transaction:
fenced on the call's start, history, worst status, alerts). Honest by construction:

- a customer missing from the answer, or leased by a refresh already running, gets its own
  call (`refresh_customer`), so nobody is silently left stale;
- when the endpoint does not work for the account (403 without the Msp.Read scope, 404, an
  answer whose shape we do not know), every customer falls back to its own call this round;
- transient failures (timeouts, 5xx, 429) are written on every customer as a per-customer
  failure would be (previous data kept, breaker fed) and the one task is retried with the
  same back-off (never sooner than Retry-After); a rejected identity is marked invalid once.

Legacy customers (an authtoken per customer) are always read one by one."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from msp_dashboard.site24x7 import (
    AuthError,
    NotFoundError,
    ResponseError,
    Site24x7Error,
    ThrottledError,
    TransientError,
)
from tokens.crypto import DecryptionError
from tokens.models import Credential, CredentialKind, CredentialState
from tokens.services import credential_mark_invalid
from tokens.upstream import get_client

from .limits import CACHE_ERRORS, BudgetExhausted, BudgetUnavailable
from .models import AuthGeneration, Customer
from .services import (
    MSP_ACCOUNT,
    Fetched,
    RefreshResult,
    _Call,
    _classify,
    _Failure,
    _lease_left,
    _record_failure,
    backoff_delay,
    customers_store_fetched,
    leases_release,
    oauth_call,
    refreshes_enqueue,
)

logger = logging.getLogger("portals.refresh")

ENDPOINT = "msp_monitors_status"
WIDE_TIME_FACTOR = 4
"""The wide task reads and stores a whole MSP: its time limits are this many times a
per-customer refresh's (TASK_SOFT_TIME_LIMIT / TASK_TIME_LIMIT)."""


@dataclass(frozen=True)
class WideOutcome:
    credential_id: int
    result: str  # RefreshResult: ok | failed | skipped
    stored: int = 0  # customers written from the MSP-wide answer
    own_calls: int = 0  # customers handed to their own call (missing, leased, fallback)
    reason: str = ""
    retry_in: float | None = None


def wide_lease_timeout() -> timedelta:
    return timedelta(seconds=settings.TASK_TIME_LIMIT * WIDE_TIME_FACTOR + 10)


# --- the fan-out ------------------------------------------------------------------------------


def identities_enqueue_wide(credential_ids: list[int], *, round_id: str, expires: datetime):
    """One `refresh_wide` per MSP identity, at once, expiring with the round."""
    from .tasks import refresh_wide  # tasks import this module

    for credential_id in credential_ids:
        refresh_wide.apply_async(args=[credential_id, round_id], expires=expires)


# --- one MSP-wide refresh -----------------------------------------------------------------------


def customers_refresh_wide(*, credential_id: int, round_id: str, attempt: int = 0) -> WideOutcome:
    """Refresh every OAuth customer that round `round_id` claimed for this MSP identity with
    one upstream call. Never raises for upstream trouble; `retry_in` says when to retry."""
    credential = Credential.objects.filter(
        pk=credential_id, kind=CredentialKind.OAUTH, state=CredentialState.ACTIVE
    ).first()
    if credential is None:
        return WideOutcome(credential_id, RefreshResult.SKIPPED, reason="no usable identity")
    lease = uuid.uuid4().hex
    customers, busy = _lease_round(credential_id, round_id, lease)
    own_calls = _hand_over(busy)
    if not customers:
        return WideOutcome(credential_id, RefreshResult.SKIPPED, own_calls=own_calls,
                           reason="nothing to refresh")  # fmt: skip
    try:
        outcome = _refresh_leased(credential, customers, attempt, lease)
    finally:  # whatever was not written (an error, a time limit) is free again
        leases_release([lease])
    return dataclasses.replace(outcome, own_calls=outcome.own_calls + own_calls)


def _lease_round(credential_id: int, round_id: str, lease: str):
    """(customers leased for this refresh, customers of the round whose lease is held by a
    refresh already running); paused and throttled customers are neither (a retry after the
    breaker opened on them leaves them alone)."""
    now = timezone.now()
    claimed = (
        Customer.objects.filter(
            refresh_round=round_id,
            msp_credential_id=credential_id,
            is_active=True,
            auth_generation=AuthGeneration.OAUTH,
        )  # fmt: skip
        .exclude(paused_until__gt=now)
        .exclude(throttled_until__gt=now)
    )
    claimed.filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now)).update(
        lease_until=now + wide_lease_timeout(), lease_token=lease
    )
    rows = list(claimed.order_by("pk").values_list("pk", "zaaid", "lease_token", "lease_until"))
    leased = [(pk, zaaid) for pk, zaaid, token, _ in rows if token == lease]
    busy = [(pk, _lease_left(until, now)) for pk, _, token, until in rows if token != lease]
    return leased, busy


def _refresh_leased(credential: Credential, customers, attempt: int, lease: str) -> WideOutcome:
    started, clock, call = timezone.now(), time.monotonic(), _Call()
    client = get_client(credential.data_centre)

    def fetch(token: str):
        return client.msp_monitors_status(access_token=token)

    try:
        by_zaaid = oauth_call(credential, call, ENDPOINT, MSP_ACCOUNT, fetch)
    except (BudgetExhausted, *CACHE_ERRORS) as exc:
        return _no_call(credential, customers, started, exc, lease)
    except (Site24x7Error, DecryptionError, SoftTimeLimitExceeded) as exc:
        duration = timedelta(seconds=time.monotonic() - clock)
        return _call_failed(credential, customers, exc, call, started, duration, attempt, lease)
    duration = timedelta(seconds=time.monotonic() - clock)
    return _store_all(credential, customers, by_zaaid, started, duration, lease)


STORE_CHUNK = 100
"""Customers stored per transaction (customers_store_fetched): short transactions, a handful
of statements each."""


def _store_all(credential, customers, by_zaaid, started, duration, lease) -> WideOutcome:
    found = [Fetched(pk, by_zaaid[zaaid], duration, lease) for pk, zaaid in customers
             if zaaid in by_zaaid]  # fmt: skip
    missing = [pk for pk, zaaid in customers if zaaid not in by_zaaid]
    stored = 0
    for start in range(0, len(found), STORE_CHUNK):
        stored += len(customers_store_fetched(found[start : start + STORE_CHUNK], started=started))
    own_calls = _hand_over([(pk, 0.0) for pk in missing], lease=lease)
    logger.info(
        "refresh wide: identity %s: %d customers stored, %d missing from the answer, in %.2f s",
        credential.pk, stored, len(missing), duration.total_seconds(),
    )  # fmt: skip
    return WideOutcome(credential.pk, RefreshResult.OK, stored=stored, own_calls=own_calls)


# --- when the one call fails ------------------------------------------------------------------


def _no_call(credential, customers, started, exc, lease) -> WideOutcome:
    """The call budget is spent (or unreadable): no call, nothing retried; the next round tries
    again. Written on every customer so the grid says why it is not fresher."""
    if isinstance(exc, BudgetExhausted) and not isinstance(exc, BudgetUnavailable):
        message = f"MSP-wide call budget spent; next call in {exc.wait:.0f} s"
    else:
        message = str(BudgetUnavailable())
    _record_all(customers, _Failure("budget", message, counts=False), started, timedelta(0), lease)
    return WideOutcome(credential.pk, RefreshResult.FAILED, reason="budget")


def _call_failed(credential, customers, exc, call, started, duration, attempt, lease):
    if _endpoint_unusable(exc):
        return _fall_back(credential, customers, exc, call, lease)
    failure = _classify(exc, call, AuthGeneration.OAUTH)  # 403 fell back above
    if failure.kind == "auth":
        credential_mark_invalid(credential=credential, reason=failure.message)
    _record_all(customers, failure, started, duration, lease)
    retry_in = None
    if failure.transient and attempt < settings.REFRESH_MAX_RETRIES:
        delay = max(backoff_delay(attempt), failure.retry_after or 0)
        retry_in = delay if delay <= settings.REFRESH_BACKOFF_MAX else None
    logger.info(
        "refresh wide: identity %s failed (%s)%s", credential.pk, failure.kind,
        f", retry in {retry_in:.1f} s" if retry_in is not None else "",
    )  # fmt: skip
    return WideOutcome(credential.pk, RefreshResult.FAILED, reason=failure.kind, retry_in=retry_in)


def _endpoint_unusable(exc: BaseException) -> bool:
    """The MSP-wide endpoint does not serve this account (missing, not in the identity's
    scopes, an answer we cannot read): every customer's own call still may."""
    if isinstance(exc, (ThrottledError, TransientError)):
        return False
    if isinstance(exc, AuthError):
        return exc.http_status == 403
    return isinstance(exc, (NotFoundError, ResponseError))


def _fall_back(credential, customers, exc, call, lease) -> WideOutcome:
    from msp_dashboard.site24x7.redact import scrub

    reason = scrub(exc, call.secrets) or type(exc).__name__
    logger.warning(
        "refresh wide: identity %s: the MSP-wide call cannot be used (%s); %d customers "
        "read one by one this round", credential.pk, reason[:200], len(customers),
    )  # fmt: skip
    own_calls = _hand_over([(pk, 0.0) for pk, _ in customers], lease=lease)
    return WideOutcome(credential.pk, RefreshResult.FAILED, own_calls=own_calls, reason="fallback")


def _record_all(customers, failure: _Failure, started, duration, lease) -> None:
    for pk, _ in customers:
        _record_failure(pk, failure, started, duration, lease)


# --- handing customers to their own call ----------------------------------------------------------


def _hand_over(planned: list[tuple[int, float]], *, lease: str = "") -> int:
    """Enqueue a per-customer refresh for each (pk, countdown), releasing our lease on them
    first; they expire at the next round."""
    if not planned:
        return 0
    if lease:
        ids = [pk for pk, _ in planned]
        Customer.objects.filter(pk__in=ids, lease_token=lease).update(
            lease_until=None, lease_token=""
        )
    expires = timezone.now() + timedelta(seconds=settings.REFRESH_INTERVAL)
    refreshes_enqueue(planned, expires=expires)
    return len(planned)


__all__ = ["WideOutcome", "customers_refresh_wide", "identities_enqueue_wide"]
