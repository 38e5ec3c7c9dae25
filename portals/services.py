"""Customer discovery (sync) and the background refresh: the only code that writes what
Site24x7 says about customers.

Refresh, in one picture (DESIGN.md, "Data flow"): beat runs `refresh_due` every interval, which
claims the due customers with one conditional UPDATE and enqueues one `refresh_customer(id)`
each, staggered over part of the interval (REFRESH_STAGGER_FRACTION, half by default) and
expiring at the next round. A refresh takes a lease on its customer row (one conditional
UPDATE), spends one unit of the call budget, makes one upstream call, and writes groups, status
changes and the outcome in one transaction, fenced on the time its fetch started. Failures
are classified: transient ones are retried by Celery (the one retry layer) with full-jitter
back-off honouring Retry-After; auth failures invalidate the credential and stop polling; every
counted failure feeds the per-customer circuit breaker.

Secrets: decrypted here only to be handed to the client for one call; error text is scrubbed
of them before it is stored; tasks carry customer ids only."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import (
    Case,
    CharField,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    When,
    prefetch_related_objects,
)
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from msp_dashboard.db import changed_fields, rows_for_ids, rows_insert, rows_write
from msp_dashboard.site24x7 import (
    AuthError,
    GroupStatus,
    ResponseError,
    Site24x7Error,
    Status,
    ThrottledError,
    TransientError,
    worst_status,
)
from msp_dashboard.site24x7.redact import scrub
from tokens.crypto import DecryptionError
from tokens.models import AuditAction, AuditOutcome, Credential, CredentialKind, CredentialState
from tokens.services import (
    audit_record,
    credential_for_customer,
    credential_mark_invalid,
    credential_secret,
    credentials_for_customers,
    oauth_access_token,
)
from tokens.upstream import get_client, msp_wide_refresh, status_call_for

from .limits import CACHE_ERRORS, BudgetExhausted, BudgetUnavailable, budget_take, budgets_take
from .models import AuthGeneration, Customer, MonitorGroup, StatusChange
from .signals import Refreshed, refreshed_many_on_commit, refreshed_on_commit

logger = logging.getLogger("portals.refresh")

MSP_ACCOUNT = "msp"
BROKER_DOWN = "The task queue is unreachable right now; try again in a minute."
ROUND_GUARD = 0.75
"""A customer enqueued by a round is not claimed again for this part of the interval (REL-03).
Above one half, so that two beats (a restarted one, or a second one started by mistake) never
claim a customer twice in one interval, whatever their phase: with one half, two beats half an
interval apart took turns, and every customer was refreshed twice per interval. Below one, so a
round that runs late by up to a quarter interval does not make the next one skip customers."""
LEASE_GRACE = 1.0
"""Seconds after a lease's end at which a refresh deferred by it starts (hosts' clocks differ)."""
BATCH_MAX = 10
"""At most this many customers per automatic refresh batch (a batch's time limits are this
many times a refresh's)."""


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    created: int = 0
    updated: int = 0
    deactivated: int = 0
    reactivated: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deactivated or self.reactivated)

    def __str__(self) -> str:
        return (
            f"created={self.created} updated={self.updated} deactivated={self.deactivated} "
            f"reactivated={self.reactivated} unchanged={self.unchanged}"
        )


@dataclass(frozen=True)
class SyncReport:
    """One credential's line of `customers_sync_all`: a result, or why there is none."""

    credential_id: int
    label: str
    result: SyncResult | None = None
    error: str = ""


class RefreshResult:
    OK = "ok"  # fresh data stored
    SKIPPED = "skipped"  # no upstream call: running elsewhere, paused, throttled, no credential
    FAILED = "failed"  # the upstream call (or the budget) failed; previous data kept
    IGNORED = "ignored"  # a newer result was already stored (fencing)
    PENDING = "pending"  # fetched; stored with its batch (customers_refresh_batch)


@dataclass(frozen=True)
class RefreshOutcome:
    customer_id: int
    result: str
    reason: str = ""  # why skipped, or the error kind when failed
    error: str = ""  # scrubbed, short
    groups: int | None = None
    worst_status: Status | None = None
    duration: timedelta | None = None
    retry_in: float | None = None  # seconds; set when the task should retry


@dataclass(frozen=True)
class RefreshNowResult:
    queued: bool
    message: str


@dataclass
class _Failure:
    kind: str
    message: str
    transient: bool = False
    counts: bool = True  # feeds consecutive_failures and the circuit breaker
    retry_after: float | None = None
    throttle_for: float | None = None


@dataclass
class _Call:
    """What one refresh learned along the way: the secrets to scrub from any error; and the
    budget unit of its first call when its batch counted it already (`Prepared.budget`)."""

    secrets: list[str] = field(default_factory=list)
    budget: BudgetExhausted | bool | None = None


@dataclass(frozen=True)
class Prepared:
    """What a batch read and took for one customer a moment ago: its row and credential; the
    lease it took ("": another refresh holds it; None: none taken, the refresh takes it); the
    budget unit of its call (None: the refresh counts it; True: counted; else the
    BudgetExhausted that refused it)."""

    customer: Customer | None
    credential: Credential | None
    lease: str | None = None
    budget: BudgetExhausted | bool | None = None


# --- credential state, in one query for many customers -----------------------------------------


def with_credential_state(queryset: QuerySet) -> QuerySet:
    """Annotate `credential_state`: the state of the credential a refresh would use ("active",
    "invalid"), or None when there is none. Legacy: the customer's best portal authtoken (an
    active one first); OAuth: the MSP identity that reads it. Revoked counts as none."""
    legacy = (
        Credential.objects.filter(customer=OuterRef("pk"), kind=CredentialKind.PORTAL_AUTHTOKEN)
        .exclude(state=CredentialState.REVOKED)
        .order_by(Case(When(state=CredentialState.ACTIVE, then=0), default=1), "-created_at", "-id")
        .values("state")[:1]
    )
    oauth_state = Case(
        When(msp_credential__state=CredentialState.REVOKED, then=None),
        default=F("msp_credential__state"),
        output_field=CharField(),
    )
    return queryset.annotate(
        credential_state=Case(
            When(auth_generation=AuthGeneration.OAUTH, then=oauth_state),
            default=Subquery(legacy),
            output_field=CharField(),
        )
    )


# --- customer sync (issue 3) -------------------------------------------------------------------


def customer_sync(*, credential: Credential, actor=None, ip: str | None = None) -> SyncResult:
    """Read the MSP customer list with this MSP credential and upsert the customers.

    Customers no longer listed (for this credential) become inactive, never deleted; a customer
    that comes back is reactivated. A run that finds nothing new writes nothing. Raises the
    client's typed error when the list cannot be read (AuthError: the credential is marked
    invalid first)."""
    if credential.kind not in (CredentialKind.MSP_AUTHTOKEN, CredentialKind.OAUTH):
        raise ValueError("customer sync needs an MSP authtoken or an OAuth identity")
    try:
        listed = _listed_customers(credential)
    except Site24x7Error as exc:
        _sync_failed(credential, exc, actor=actor, ip=ip)
        raise
    result = _upsert_customers(credential, listed)
    if result.changed or actor is not None:
        audit_record(
            action=AuditAction.CUSTOMER_SYNC, actor=actor, ip=ip, credential=credential,
            detail=str(result),
        )  # fmt: skip
    logger.info("sync: credential %s: %s", credential.pk, result)
    return result


def customers_sync_all(*, actor=None, ip: str | None = None) -> list[SyncReport]:
    """`customer_sync` for every active MSP credential; one failing does not stop the others."""
    reports = []
    credentials = Credential.objects.filter(
        kind__in=(CredentialKind.MSP_AUTHTOKEN, CredentialKind.OAUTH),
        state=CredentialState.ACTIVE,
    ).order_by("pk")
    for credential in credentials:
        label = credential.label or credential.get_kind_display()
        try:
            result = customer_sync(credential=credential, actor=actor, ip=ip)
        except (Site24x7Error, DecryptionError, BudgetExhausted) as exc:
            reports.append(SyncReport(credential.pk, label, error=scrub(exc, ())))
            continue
        except CACHE_ERRORS:  # the OAuth token cache is down (REL-10)
            reports.append(SyncReport(credential.pk, label, error=str(BudgetUnavailable())))
            continue
        reports.append(SyncReport(credential.pk, label, result=result))
    return reports


def _listed_customers(credential: Credential) -> dict[str, dict[str, str]]:
    """{portal_id or zaaid: fields} as Site24x7 lists them for this credential."""
    client = get_client(credential.data_centre)
    if credential.kind == CredentialKind.MSP_AUTHTOKEN:
        _spend(credential, "portals", MSP_ACCOUNT)
        portals = client.list_portals(msp_authtoken=credential_secret(credential))
        return {p.portal_id: {"name": p.name[:200], "zaid": p.zaid} for p in portals}
    token = oauth_access_token(credential=credential)
    try:
        _spend(credential, "short_customers", MSP_ACCOUNT)
        customers = client.list_msp_customers(access_token=token)
    except AuthError:
        token = oauth_access_token(credential=credential, rejected=token)
        _spend(credential, "short_customers", MSP_ACCOUNT)
        customers = client.list_msp_customers(access_token=token)
    return {c.zaaid: {"name": c.name[:200], "user_id": c.user_id} for c in customers}


def _sync_failed(credential: Credential, exc: Site24x7Error, *, actor, ip) -> None:
    reason = scrub(exc, ())
    if isinstance(exc, AuthError):
        credential_mark_invalid(credential=credential, reason=reason)
    elif actor is None:
        logger.warning("sync: credential %s: %s", credential.pk, reason)
        return
    audit_record(
        action=AuditAction.CUSTOMER_SYNC, outcome=AuditOutcome.FAILURE, actor=actor, ip=ip,
        credential=credential, detail=reason,
    )  # fmt: skip


SYNC_FIELDS = ["name", "zaid", "user_id", "data_centre", "auth_generation", "msp_credential_id",
               "is_active", "deactivated_at"]  # fmt: skip


def _upsert_customers(credential: Credential, listed: dict[str, dict[str, str]]) -> SyncResult:
    legacy = credential.kind == CredentialKind.MSP_AUTHTOKEN
    key = "portal_id" if legacy else "zaaid"
    generation = AuthGeneration.LEGACY if legacy else AuthGeneration.OAUTH
    now = timezone.now()
    mine = Q(**{f"{key}__in": list(listed)}) | Q(msp_credential=credential)
    known = Customer.objects.filter(mine)
    existing = {getattr(c, key): c for c in known}
    common = {"data_centre": credential.data_centre, "auth_generation": generation,
              "msp_credential_id": credential.pk}  # fmt: skip
    new, changed, counts = [], [], dict.fromkeys(("updated", "reactivated", "unchanged"), 0)
    for ident, fields in listed.items():
        customer = existing.get(ident)
        if customer is None:
            new.append(Customer(**{key: ident}, **fields, **common, discovered_at=now))
            continue
        outcome = _apply(customer, {**fields, **common, "is_active": True, "deactivated_at": None})
        counts[outcome] += 1
        if outcome != "unchanged":
            changed.append(customer)
    gone = [c for k, c in existing.items() if k not in listed and c.is_active
            and c.msp_credential_id == credential.pk]  # fmt: skip
    for customer in gone:
        customer.is_active, customer.deactivated_at = False, now
    if new or changed or gone:
        with transaction.atomic():
            Customer.objects.bulk_create(new, batch_size=500)
            Customer.objects.bulk_update(changed + gone, SYNC_FIELDS, batch_size=500)
    return SyncResult(created=len(new), deactivated=len(gone), **counts)


def _apply(customer: Customer, values: dict) -> str:
    """Set `values` on `customer`; "reactivated", "updated" or "unchanged"."""
    was_active = customer.is_active
    if not _assign(customer, values):
        return "unchanged"
    return "updated" if was_active else "reactivated"


def _assign(obj, values: dict) -> bool:
    """Set the attributes that differ; True if any did."""
    return bool(changed_fields(obj, values))


# --- the fan-out (beat, every interval) --------------------------------------------------------


def customers_due(*, now: datetime) -> QuerySet:
    """Active customers with a usable credential, not paused, not throttled, not leased past
    this round, and not already enqueued by a round in the last ROUND_GUARD of an interval.

    A lease that ends before this round's refreshes expire (a refresh in flight, or one whose
    worker was killed, REL-09) does not skip the customer for a whole round: its refresh is
    deferred to the lease's end (`customers_enqueue_due`)."""
    guard = now - timedelta(seconds=settings.REFRESH_INTERVAL * ROUND_GUARD)
    horizon = now + timedelta(seconds=settings.REFRESH_INTERVAL - 2 * LEASE_GRACE)
    return (
        with_credential_state(Customer.objects.filter(is_active=True))
        .filter(credential_state=CredentialState.ACTIVE)
        .exclude(throttled_until__gt=now)
        .exclude(paused_until__gt=now)
        .exclude(lease_until__gt=horizon)
        .filter(Q(refresh_enqueued_at__isnull=True) | Q(refresh_enqueued_at__lte=guard))
    )


def customers_enqueue_due(*, now: datetime | None = None) -> int:
    """Claim the due customers for this round and enqueue one refresh each.

    The claim is one UPDATE whose own WHERE repeats the per-round guard, so two rounds that
    run at once (a pile-up after an outage) claim disjoint sets: each customer is enqueued at
    most once per round. Refreshes are staggered over REFRESH_STAGGER_FRACTION of the interval
    (0: all at once) and expire at the next round, so messages that wait in a stopped queue
    never pile up."""
    now = now or timezone.now()
    interval = settings.REFRESH_INTERVAL
    guard = now - timedelta(seconds=interval * ROUND_GUARD)
    round_id = uuid.uuid4().hex
    due = customers_due(now=now).values("pk")
    claimed = (
        Customer.objects.filter(pk__in=Subquery(due))
        .filter(Q(refresh_enqueued_at__isnull=True) | Q(refresh_enqueued_at__lte=guard))
        .update(refresh_enqueued_at=now, refresh_round=round_id)
    )
    if not claimed:
        return 0
    rows = list(
        Customer.objects.filter(refresh_round=round_id)
        .order_by("pk")
        .values_list("pk", "lease_until", "auth_generation", "msp_credential_id")
    )
    expires = now + timedelta(seconds=interval)
    own, identities = _split_round(rows)
    waits = [(pk, _lease_left(lease, now)) for pk, lease in own]
    deferred = [(pk, wait) for pk, wait in waits if wait]  # after the lease held on them
    batches = _batches([pk for pk, wait in waits if not wait])
    spread = interval * _stagger_fraction() / max(1, len(batches))
    refreshes_enqueue(
        [(batch, i * spread) for i, batch in enumerate(batches)] + deferred, expires=expires
    )
    if identities:
        from .wide import identities_enqueue_wide

        identities_enqueue_wide(sorted(identities), round_id=round_id, expires=expires)
    logger.info(
        "refresh round %s: %d customers enqueued (%d by MSP-wide call)",
        round_id[:8], len(rows), len(rows) - len(own),
    )  # fmt: skip
    return len(rows)


def _split_round(rows) -> tuple[list[tuple[int, datetime | None]], set[int]]:
    """(customers refreshed by their own call, MSP identities read with one MSP-wide call):
    OAuth customers go to the second when SITE24X7_OAUTH_REFRESH_SOURCE=msp_wide."""
    wide = msp_wide_refresh()
    own, identities = [], set()
    for pk, lease_until, generation, credential_id in rows:
        if wide and generation == AuthGeneration.OAUTH and credential_id:
            identities.add(credential_id)
        else:
            own.append((pk, lease_until))
    return own, identities


def batch_size_for(due: int) -> int:
    """Customers per refresh message for a round of `due` customers: REFRESH_BATCH_SIZE, or
    when 0, one each up to 4 x REFRESH_CONCURRENCY (a small MSP: every refresh starts at once),
    then the size that makes at most four messages per worker thread (so the threads finish
    together: 1,000 customers on 32 threads are 125 batches of 8, not 143 of 7, where some
    threads would take a fifth), at most BATCH_MAX. `_batches` then sends the round's last
    customers as one more wave of smaller batches (`_last_wave`)."""
    fixed = int(settings.REFRESH_BATCH_SIZE)
    if fixed > 0:
        return fixed
    messages = 4 * max(1, int(settings.REFRESH_CONCURRENCY))
    return max(1, min(BATCH_MAX, -(-due // messages)))  # ceiling division


def _batches(pks: list[int]) -> list[int | list[int]]:
    """The round's customers as messages: a customer id, or a list of ids (a batch)."""
    size = batch_size_for(len(pks))
    if size == 1:
        return list(pks)
    fixed = int(settings.REFRESH_BATCH_SIZE) > 0
    lengths = itertools.repeat(size) if fixed else _staggered(size)
    last = 0 if fixed else _last_wave(len(pks), size)
    messages, start, end = [], 0, len(pks) - last
    for length in lengths:
        if start >= end:
            break
        messages.append(pks[start : min(start + length, end)])
        start += length
    small = max(1, size // 4)
    messages += [pks[i : i + small] for i in range(end, len(pks), small)]
    return messages


def _last_wave(due: int, size: int) -> int:
    """Customers sent at the end of a round in small batches (a quarter of the size), one per
    worker thread: a thread that takes a last full batch ends up to a batch's time after the
    others, idle meanwhile (at 1,000 customers, 100 ms and 32 threads: 0.5 s of a 4.2 s round,
    and 0.2 s with this wave). 0 for a round too small to have one."""
    threads, small = max(2, int(settings.REFRESH_CONCURRENCY)), max(1, size // 4)
    if small == size or due < 2 * threads * size:
        return 0
    return threads * small


def _staggered(size: int) -> Iterator[int]:
    """Batch sizes of `size` on average, the first wave's (one per worker thread) spread from
    half to one and a half times it: every thread starts at once, so equal batches would end
    at once too, and every thread would store its batch at the same moment (the stores then
    queue for the CPU and no call is in flight meanwhile); spread, they keep apart all round."""
    threads = max(2, int(settings.REFRESH_CONCURRENCY))
    for i in range(threads):
        yield max(1, round(size * (0.5 + i / (threads - 1))))
    yield from itertools.repeat(size)


def refreshes_enqueue(
    planned: list[tuple[int | list[int], float]], *, expires: datetime, kwargs: dict | None = None
) -> None:
    """Enqueue, for each (customer id or list of ids, countdown in seconds),
    `refresh_customer(pk, **kwargs)` or `refresh_batch(pks)`, expiring at `expires`, through
    one producer (one broker connection): thousands of messages a round."""
    from .tasks import refresh_batch, refresh_customer  # tasks import this module

    if not planned:
        return
    kwargs = kwargs or {}
    with refresh_customer.app.producer_or_acquire() as producer:
        for target, countdown in planned:
            task = refresh_batch if isinstance(target, list) else refresh_customer
            task.apply_async(
                args=[target], kwargs={} if task is refresh_batch else kwargs,
                countdown=round(countdown, 3), expires=expires, producer=producer,
            )  # fmt: skip


def customers_refresh_batch(*, customer_ids: list[int]) -> list[RefreshOutcome]:
    """Refresh each customer in turn, as `refresh_customer` would (its own lease, call and
    outcome; one that should retry is retried on its own), then store every successful fetch
    in one transaction (`customers_store_fetched`), as fetched at the batch's start: a few
    statements for the batch instead of a transaction per customer."""
    batch = rows_for_ids(lambda ids: Customer.objects.filter(pk__in=ids), customer_ids)
    customers = {customer.pk: customer for customer in batch}
    # An OAuth customer's credential is its MSP identity, read for those only (one query);
    # legacy customers use their own portal authtoken (no join with the credentials).
    oauth = [c for c in customers.values() if c.auth_generation == AuthGeneration.OAUTH]
    prefetch_related_objects(oauth, "msp_credential")
    credentials = credentials_for_customers(customers.values())
    started, fetched, outcomes = timezone.now(), [], []
    ready = [pk for pk, c in customers.items() if credentials[pk] and not _skip_reason(c, started)]
    leases = leases_take(ready)  # one UPDATE for the batch
    budgets = _budgets_take(customers, credentials, leases)  # one round trip to Redis
    for pk in customer_ids:
        prepared = Prepared(
            customers.get(pk), credentials.get(pk),
            lease=leases.get(pk, "") if pk in ready else None, budget=budgets.get(pk),
        )  # fmt: skip
        outcomes.append(customer_refresh(customer_id=pk, prepared=prepared, into=fetched))
    stored = _store_batch(fetched, started)
    retries = [(o.customer_id, o.retry_in) for o in outcomes if o.retry_in is not None]
    expires = timezone.now() + timedelta(seconds=settings.REFRESH_INTERVAL)
    refreshes_enqueue(retries, expires=expires, kwargs={"first_attempt": 1})
    return [_stored_outcome(outcome, stored) for outcome in outcomes]


def _budgets_take(customers, credentials, leases: dict[int, str]) -> dict[int, object]:
    """The budget unit of each leased customer's call, counted for the batch at once."""
    pks = list(leases)
    source = {g: status_call_for(g).source for g in {customers[pk].auth_generation for pk in pks}}
    calls = [(credentials[pk].pk, source[customers[pk].auth_generation], pk) for pk in pks]
    return {pk: refused or True for pk, refused in zip(pks, budgets_take(calls), strict=True)}


def _store_batch(fetched: list[Fetched], started: datetime) -> set[int]:
    if not fetched:
        return set()
    try:
        return customers_store_fetched(fetched, started=started)
    except BaseException:  # nothing stored: free the customers at once, not at lease end
        leases_release(item.lease for item in fetched)
        raise


def _stored_outcome(outcome: RefreshOutcome, stored: set[int]) -> RefreshOutcome:
    if outcome.result != RefreshResult.PENDING:
        return outcome
    result = RefreshResult.OK if outcome.customer_id in stored else RefreshResult.IGNORED
    seconds = outcome.duration.total_seconds() if outcome.duration else 0.0
    logger.info("refresh: customer %s %s in %.2f s (batch)", outcome.customer_id, result, seconds)
    return dataclasses.replace(outcome, result=result)


def _lease_left(lease_until: datetime | None, now: datetime) -> float:
    """Seconds until a lease held now has ended (plus a grace), 0 when there is none."""
    if lease_until is None or lease_until <= now:
        return 0.0
    return (lease_until - now).total_seconds() + LEASE_GRACE


def _stagger_fraction() -> float:
    """REFRESH_STAGGER_FRACTION, within 0..1: refreshes of one round start spread over this
    part of the interval; the rest is slack before they expire at the next round."""
    return min(1.0, max(0.0, float(settings.REFRESH_STAGGER_FRACTION)))


# --- refresh now (operators) -------------------------------------------------------------------


def customer_refresh_now(*, customer_id: int, actor=None) -> RefreshNowResult:
    """Queue a refresh of one customer at once, for an operator.

    Bypasses the due check and an open circuit breaker (an explicit request is the probe; a
    failure while paused leaves the pause as it was), but not the lease (a running refresh
    wins), the call budget, or a throttle Site24x7 asked for (Retry-After)."""
    from .tasks import refresh_customer

    customer = Customer.objects.select_related("msp_credential").get(pk=customer_id)
    now = timezone.now()
    refusal = _refresh_now_refusal(customer, now)
    if refusal:
        return RefreshNowResult(False, refusal)
    try:
        refresh_customer.apply_async_on_commit(
            args=[customer.pk],
            kwargs={"manual": True},
            expires=now + timedelta(seconds=settings.REFRESH_INTERVAL),
        )
    except KombuOperationalError:  # the broker is down (REL-10): say so, never a 500
        logger.warning("refresh now: customer %s not queued: broker unreachable", customer.pk)
        return RefreshNowResult(False, BROKER_DOWN)
    who = actor.get_username() if getattr(actor, "is_authenticated", False) else "system"
    logger.info("refresh now: customer %s queued by %s", customer.pk, who)
    return RefreshNowResult(True, f"Refresh of {customer.name} queued.")


def _refresh_now_refusal(customer: Customer, now: datetime) -> str:
    if not customer.is_active:
        return f"{customer.name} is no longer listed by Site24x7; it is not refreshed."
    if credential_for_customer(customer) is None:
        return f"{customer.name} has no usable credential: create, import or reconnect one."
    if customer.throttled_until and customer.throttled_until > now:
        until = timezone.localtime(customer.throttled_until).strftime("%H:%M:%S")
        return f"Site24x7 asked us to wait before reading {customer.name} again: after {until}."
    return ""


# --- one refresh --------------------------------------------------------------------------------


def customer_refresh(
    *,
    customer_id: int,
    attempt: int = 0,
    manual: bool = False,
    prepared: Prepared | None = None,
    into: list[Fetched] | None = None,
) -> RefreshOutcome:
    """Refresh one customer: at most one upstream call (two for OAuth when the access token
    was rejected and is replaced), written in one transaction. Never raises for upstream
    trouble: the outcome says what happened, and `retry_in` when Celery should retry.
    A batch passes `prepared` (what it read and took a moment ago) and `into`, where a
    successful fetch is put (result PENDING, lease held) for the batch to store."""
    now = timezone.now()
    if prepared is None:
        customer = _customer_for_refresh(customer_id)
        credential = credential_for_customer(customer) if customer else None
        prepared = Prepared(customer, credential)
    customer, credential, lease = prepared.customer, prepared.credential, prepared.lease
    reason = _skip_reason(customer, now, manual)
    credential = credential if not reason else None
    if not reason and credential is None:
        reason = "no credential"
    if reason:
        leases_release([lease])  # a batch's lease, when the reason came up since
        return RefreshOutcome(customer_id, RefreshResult.SKIPPED, reason)
    lease = leases_take([customer_id]).get(customer_id) if lease is None else lease
    if not lease:
        return RefreshOutcome(customer_id, RefreshResult.SKIPPED, "already running")
    written = False
    try:
        call = _Call(budget=prepared.budget)
        outcome = _refresh_leased(customer, credential, attempt, lease, into, call)
        # What was written (OK, FAILED) released the lease in the same UPDATE; a PENDING
        # one's is released when its batch is stored.
        written = outcome.result in (RefreshResult.OK, RefreshResult.FAILED, RefreshResult.PENDING)
        return outcome
    finally:
        if not written:
            leases_release([lease])


def _customer_for_refresh(customer_id: int) -> Customer | None:
    return Customer.objects.select_related("msp_credential").filter(pk=customer_id).first()


def _skip_reason(customer: Customer | None, now: datetime, manual: bool = False) -> str:
    if customer is None or not customer.is_active:
        return "inactive"
    if customer.throttled_until and customer.throttled_until > now:
        return "throttled"
    if not manual and customer.paused_until and customer.paused_until > now:
        return "paused"
    return ""


def lease_timeout() -> timedelta:
    """A lease outlives the task's hard time limit, so only a killed worker leaves one behind,
    and then it blocks its customer no longer than this."""
    return timedelta(seconds=settings.TASK_TIME_LIMIT + 10)


def leases_take(customer_ids: list[int]) -> dict[int, str]:
    """The overlap guard (REL-02): one conditional UPDATE takes the free leases of these
    customers, each with its own token ("<random>-<id>"); {customer id: token} of those taken
    (a second query names them only when some were held)."""
    if not customer_ids:
        return {}
    now, prefix = timezone.now(), uuid.uuid4().hex[:12]  # 12 + 1 + up to 19 digits <= 32
    tokens = {pk: f"{prefix}-{pk}" for pk in customer_ids}
    taken = _leases_update(list(tokens), f"{prefix}-", now, now + lease_timeout())
    if taken < len(tokens):
        held = Customer.objects.filter(lease_token__in=tokens.values()).values_list("pk", flat=True)
        tokens = {pk: tokens[pk] for pk in held}
    return tokens


def _leases_update(pks: list[int], prefix: str, now: datetime, until: datetime) -> int:
    """The UPDATE of `leases_take`, written out: each free lease of these customers set to
    `until` with the token prefix + id. The ORM's version (Concat, Cast, two Q objects) cost
    three times the statement's own time to compile, on every batch."""
    db = router.db_for_write(Customer)
    connection, meta = connections[db], Customer._meta
    field, quote = meta.get_field("lease_until"), connection.ops.quote_name
    names = (meta.db_table, field.column, meta.get_field("lease_token").column, meta.pk.column)
    table, lease, token, pk = (quote(name) for name in names)  # our names; values are params
    sql = (
        f"UPDATE {table} SET {lease} = %s, {token} = %s || CAST({pk} AS TEXT) "  # noqa: S608
        f"WHERE {pk} IN ({', '.join(['%s'] * len(pks))}) "
        f"AND ({lease} IS NULL OR {lease} <= %s)"
    )
    until, now = (field.get_db_prep_value(t, connection) for t in (until, now))
    with transaction.mark_for_rollback_on_error(using=db), connection.cursor() as cursor:
        cursor.execute(sql, [until, prefix, *pks, now])
        return cursor.rowcount


def leases_release(tokens: Iterable[str | None]) -> None:
    """Release the leases with these tokens (each names one customer's lease; empty ones and
    None are skipped), in one UPDATE."""
    tokens = [token for token in tokens if token]
    if tokens:
        Customer.objects.filter(lease_token__in=tokens).update(lease_until=None, lease_token="")


def _lease_drop(row: Customer, token: str) -> list[str]:
    """Release the lease on a row being written (locked), when it is still ours: the fields
    to save with the outcome, so one UPDATE (and one commit) writes both."""
    if not token or row.lease_token != token:
        return []
    row.lease_until, row.lease_token = None, ""
    return ["lease_until", "lease_token"]


def _refresh_leased(
    customer: Customer, credential: Credential, attempt: int, lease: str, into, call: _Call
) -> RefreshOutcome:
    started = timezone.now()
    clock = time.monotonic()
    try:
        groups = _fetch_groups(customer, credential, call)
    except BudgetExhausted as exc:
        return _budget_spent(customer, started, exc, lease)
    except CACHE_ERRORS:  # the OAuth token cache is down (REL-10): no call, as for the budget
        return _budget_spent(customer, started, BudgetUnavailable(), lease)
    except (Site24x7Error, DecryptionError, SoftTimeLimitExceeded) as exc:
        duration = timedelta(seconds=time.monotonic() - clock)
        failure = _classify(exc, call, customer.auth_generation)
        return _failed(customer, credential, failure, started, duration, attempt, lease)
    duration = timedelta(seconds=time.monotonic() - clock)
    if into is not None:
        into.append(Fetched(customer.pk, groups, duration, lease))
        return RefreshOutcome(customer.pk, RefreshResult.PENDING, groups=len(groups),
                              worst_status=_worst(groups), duration=duration)  # fmt: skip
    stored = customer_store_groups(
        customer_id=customer.pk, groups=groups, started=started, duration=duration, lease=lease
    )
    result = RefreshResult.OK if stored else RefreshResult.IGNORED
    worst = _worst(groups)
    logger.info("refresh: customer %s %s in %.2f s", customer.pk, result, duration.total_seconds())
    return RefreshOutcome(
        customer.pk, result, groups=len(groups), worst_status=worst, duration=duration
    )


def _fetch_groups(customer: Customer, credential: Credential, call: _Call) -> list[GroupStatus]:
    """The customer's groups from the status source and selector the switches name
    (SITE24X7_*_STATUS_SOURCE, SITE24X7_ZAID_VIA / ZAAID_VIA, tokens.upstream)."""
    client = get_client(customer.data_centre)
    status_call = status_call_for(customer.auth_generation)
    if customer.auth_generation == AuthGeneration.OAUTH:
        return _fetch_oauth(client, status_call, customer, credential, call)
    token = credential_secret(credential)
    call.secrets.append(token)
    _spend_first(call, credential, status_call.source, customer.pk)
    return status_call.fetch(client, customer=customer, token=token)


def _fetch_oauth(client, status_call, customer: Customer, credential: Credential, call: _Call):
    def fetch(token: str) -> list[GroupStatus]:
        return status_call.fetch(client, customer=customer, token=token)

    return oauth_call(credential, call, status_call.source, customer.pk, fetch)


def oauth_call(credential: Credential, call: _Call, endpoint: str, account, fetch: Callable):
    """`fetch(access_token)` with the identity's shared access token, one budget unit of
    `endpoint` spent first; if Site24x7 rejects the token itself (401), once more with a
    replacement (minted once for all workers), before the identity is blamed."""
    token = oauth_access_token(credential=credential)
    call.secrets.append(token)
    try:
        _spend_first(call, credential, endpoint, account)
        return fetch(token)
    except AuthError as exc:
        if exc.http_status == 403:
            raise
    token = oauth_access_token(credential=credential, rejected=token)
    call.secrets.append(token)
    _spend(credential, endpoint, account)
    return fetch(token)


def _spend(credential: Credential, endpoint: str, account: str | int) -> None:
    budget_take(credential_id=credential.pk, endpoint=endpoint, account=account)


def _spend_first(call: _Call, credential: Credential, endpoint: str, account) -> None:
    """The budget unit of a refresh's first call: counted now, unless its batch counted it
    (or was refused it) already."""
    counted, call.budget = call.budget, None
    if counted is None:
        _spend(credential, endpoint, account)
    elif isinstance(counted, BudgetExhausted):
        raise counted


def _classify(exc: BaseException, call: _Call, generation: str) -> _Failure:
    if isinstance(exc, SoftTimeLimitExceeded):
        return _Failure("timeout", "the refresh ran out of time (soft time limit)", transient=True)
    if isinstance(exc, DecryptionError):
        return _Failure("secret", "the stored credential does not decrypt with the current keys")
    message = scrub(exc, call.secrets) or type(exc).__name__
    if isinstance(exc, ThrottledError):
        return _Failure("throttled", message, transient=True, retry_after=exc.retry_after)
    if isinstance(exc, TransientError):
        return _Failure(_transient_kind(exc, message), message, transient=True)
    if isinstance(exc, AuthError):
        if generation == AuthGeneration.OAUTH and exc.http_status == 403:
            # The identity works, but not for this customer: its own problem, not the
            # identity's; the breaker pauses it if it persists.
            return _Failure("forbidden", message)
        return _Failure("auth", message, counts=False)
    if isinstance(exc, ResponseError):
        return _Failure("response", message)
    return _Failure("error", message)


def _transient_kind(exc: TransientError, message: str) -> str:
    if exc.http_status:
        return "server"
    lowered = message.lower()
    return "timeout" if "in time" in lowered or "timed out" in lowered else "connection"


def backoff_delay(attempt: int) -> float:
    """Full jitter: uniform between 0 and min(cap, base * 2**attempt) seconds."""
    ceiling = min(settings.REFRESH_BACKOFF_MAX, settings.REFRESH_BACKOFF_BASE * 2**attempt)
    return random.uniform(0, ceiling)


def _failed(
    customer, credential, failure: _Failure, started, duration, attempt, lease: str = ""
) -> RefreshOutcome:
    delay = None
    if failure.transient:
        delay = max(backoff_delay(attempt), failure.retry_after or 0)
        if failure.kind == "throttled":
            failure.throttle_for = failure.retry_after if failure.retry_after else delay
    if failure.kind == "auth":
        credential_mark_invalid(credential=credential, reason=failure.message, customer=customer)
    recorded, tripped = _record_failure(customer.pk, failure, started, duration, lease)
    retry = (
        delay is not None
        and recorded
        and not tripped
        and attempt < settings.REFRESH_MAX_RETRIES
        and delay <= settings.REFRESH_BACKOFF_MAX  # longer waits are the next round's job
    )
    logger.info(
        "refresh: customer %s failed (%s)%s", customer.pk, failure.kind,
        f", retry in {delay:.1f} s" if retry else "",
    )  # fmt: skip
    return RefreshOutcome(
        customer.pk,
        RefreshResult.FAILED if recorded else RefreshResult.IGNORED,
        failure.kind,
        failure.message,
        duration=duration,
        retry_in=delay if retry else None,
    )


def _record_failure(
    customer_id, failure: _Failure, started, duration, lease: str = ""
) -> tuple[bool, bool]:
    """Write a failed attempt (previous data stays) and release the lease `lease`; (recorded,
    breaker tripped)."""
    now = timezone.now()
    with transaction.atomic():
        row = Customer.objects.select_for_update().get(pk=customer_id)
        if _newer_than(row, started):
            return False, False
        row.last_attempt_at, row.last_duration = started, duration
        row.last_error, row.last_error_kind = failure.message[:300], failure.kind
        if failure.throttle_for is not None:
            row.throttled_until = now + timedelta(seconds=failure.throttle_for)
        tripped = failure.counts and _count_failure(row, now)
        row.save(update_fields=OUTCOME_FIELDS + _lease_drop(row, lease))
        refreshed_on_commit(customer_id, ok=False, customer=row)  # alerts listen
    return True, tripped


def _newer_than(row: Customer, started: datetime) -> bool:
    """A result of an attempt that started at `started` is older than what is stored."""
    return bool(
        (row.data_fetched_at and row.data_fetched_at >= started)
        or (row.last_attempt_at and row.last_attempt_at > started)
    )


def _count_failure(row: Customer, now: datetime) -> bool:
    """One more failure in a row; open the breaker at the threshold (REL-07). A failure while
    already paused (an operator's manual probe) leaves the pause as it is."""
    row.consecutive_failures += 1
    if row.consecutive_failures < settings.BREAKER_THRESHOLD:
        return False
    if row.paused_until and row.paused_until > now:
        return True
    pause = min(settings.BREAKER_PAUSE * 2**row.breaker_trips, settings.BREAKER_PAUSE_MAX)
    row.paused_until = now + timedelta(seconds=pause)
    row.breaker_trips += 1
    logger.warning("refresh: customer %s paused for %d s (breaker)", row.pk, pause)
    return True


def _budget_spent(
    customer: Customer, started: datetime, exc: BudgetExhausted, lease: str = ""
) -> RefreshOutcome:
    """No call was made: treat the customer as throttled until the budget allows one (not at
    all when the budget could not be read: the next round tries again)."""
    if isinstance(exc, BudgetUnavailable):
        message = str(exc)
        failure = _Failure("budget", message, counts=False)
    else:
        message = f"call budget spent; next call in {exc.wait:.0f} s"
        failure = _Failure("budget", message, counts=False, throttle_for=exc.wait)
    recorded, _ = _record_failure(customer.pk, failure, started, timedelta(0), lease)
    result = RefreshResult.FAILED if recorded else RefreshResult.IGNORED
    return RefreshOutcome(customer.pk, result, "budget", message)


OUTCOME_FIELDS = [
    "last_attempt_at", "last_duration", "last_error", "last_error_kind", "throttled_until",
    "consecutive_failures", "paused_until", "breaker_trips",
]  # fmt: skip


# --- storing a successful result -----------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """One customer's groups as fetched, waiting to be stored (`customers_store_fetched`)."""

    customer_id: int
    groups: list[GroupStatus]
    duration: timedelta | None = None
    lease: str = ""


def customer_store_groups(
    *,
    customer_id: int,
    groups: Iterable[GroupStatus],
    started: datetime,
    duration: timedelta | None = None,
    lease: str = "",
) -> bool:
    """Store the groups fetched at `started` in one transaction: groups upserted (unique by
    customer and group id), vanished ones removed, every status change recorded, worst status
    and outcome on the customer row, and the refresh's lease `lease` released with it. False
    (nothing written) when data fetched later is already stored: a result older than what is
    stored is ignored (REL-01)."""
    fetched = Fetched(customer_id, list(groups), duration, lease)
    return bool(customers_store_fetched([fetched], started=started))


def customers_store_fetched(fetched: list[Fetched], *, started: datetime) -> set[int]:
    """`customer_store_groups` for several customers fetched at or after `started`, in one
    transaction and a handful of statements whatever their number (a batch of a round). The
    ids of the customers stored; the others (fenced: newer data is stored) keep what they
    have, and their leases are released."""
    by_pk = {f.customer_id: f for f in fetched}
    now = timezone.now()
    with transaction.atomic():
        rows = rows_for_ids(_customers_locked, by_pk)
        rows = [r for r in rows if not (r.data_fetched_at and r.data_fetched_at >= started)]
        fetched_groups = {row.pk: _unique(by_pk[row.pk].groups) for row in rows}
        digests = {pk: groups_digest(groups) for pk, groups in fetched_groups.items()}
        changed = {r.pk for r in rows if r.groups_digest != digests[r.pk]}  # others: as stored
        plan = _GroupPlan.for_customers([r for r in rows if r.pk in changed])
        writes, durations, refreshed = [], [], []
        for row in rows:
            item, groups = by_pk[row.pk], fetched_groups[row.pk]
            if row.pk in changed:
                plan.add(row, groups, now)
            worst_changed = _worst_change(row, groups, now, plan.changes)
            values = _fresh_values(row, started, now, item.lease, worst_changed)
            if row.pk in changed:
                row.groups_digest = values["groups_digest"] = digests[row.pk]
            if "last_attempt_at" in values:
                row.last_duration = item.duration
                durations.append((row, {"last_duration": item.duration}))
            writes.append((row, values))
            refreshed.append(Refreshed(row.pk, True, row, groups))
        plan.write()
        if len(writes) == 1 and durations:  # one customer: one UPDATE
            writes[0][1].update(durations.pop()[1])
        rows_write(writes)
        rows_write(durations)
        refreshed_many_on_commit(refreshed)  # alerts listen (portals.signals)
    stored = {row.pk for row in rows}
    leases_release(item.lease for item in fetched if item.customer_id not in stored)
    return stored


def _unique(groups: list[GroupStatus]) -> list[GroupStatus]:
    return list({g.group_id: g for g in groups}.values())


def groups_digest(groups: list[GroupStatus]) -> str:
    """A hash of the groups as the store keeps them (`_kept`), in any order."""
    kept = sorted((g.group_id[:40], *_kept(g).values()) for g in groups)
    return hashlib.blake2b(repr(kept).encode(), digest_size=16).hexdigest()


def _kept(fetched: GroupStatus) -> dict:
    """A fetched group's values as a MonitorGroup row keeps them."""
    return {
        "name": fetched.name[:200],
        "status": int(fetched.status),
        "monitors": max(0, fetched.monitors),
        "error_monitors": max(0, fetched.error_monitors),
        "top_group": fetched.top_group,
    }


def _worst_change(row: Customer, groups: list[GroupStatus], now, changes: list) -> bool:
    """Set the customer's worst status from its groups; True (and the change recorded) if it
    changed."""
    worst = int(_worst(groups))
    previous = row.worst_status if row.data_fetched_at else None
    if previous == worst:
        return False
    changes.append(StatusChange(customer=row, from_status=previous, to_status=worst, at=now))
    row.worst_status, row.worst_status_since = worst, now
    return True


def _worst(groups: list[GroupStatus]) -> Status:
    """Worst of the top groups (a subgroup's status already counts in its parent); of all
    groups when none is marked top."""
    top = [g.status for g in groups if g.top_group]
    return worst_status(top or [g.status for g in groups])


class _GroupPlan:
    """The group writes of one store, for one or many customers: new groups, changed ones (only
    their changed fields), vanished ones, and the status changes to record."""

    def __init__(self, existing: dict[int, dict[str, MonitorGroup]]):
        self.existing = existing
        self.new: list[MonitorGroup] = []
        self.changed: list[tuple[MonitorGroup, dict]] = []
        self.vanished: list[int] = []
        self.changes: list[StatusChange] = []

    @classmethod
    def for_customers(cls, rows: list[Customer]) -> _GroupPlan:
        existing: dict[int, dict[str, MonitorGroup]] = {row.pk: {} for row in rows}
        if rows:
            for group in rows_for_ids(_groups_of, existing):
                existing[group.customer_id][group.group_id] = group
        return cls(existing)

    def add(self, row: Customer, groups: list[GroupStatus], now: datetime) -> None:
        existing = self.existing[row.pk]
        for fetched in groups:
            self._one(row, existing.get(fetched.group_id), fetched, now)
        seen = {f.group_id for f in groups}
        self.vanished += [g.pk for gid, g in existing.items() if gid not in seen]

    def _one(self, row, group: MonitorGroup | None, fetched: GroupStatus, now) -> None:
        values = _kept(fetched)
        if group is None:
            group = MonitorGroup(customer=row, group_id=fetched.group_id[:40], **values,
                                 status_since=now, updated_at=now)  # fmt: skip
            self.new.append(group)
            self.changes.append(_group_change(row, group, None, now))
            return
        old_status = group.status
        diff = changed_fields(group, values)
        if not diff:
            return
        diff["updated_at"] = group.updated_at = now
        if group.status != old_status:
            diff["status_since"] = group.status_since = now
            self.changes.append(_group_change(row, group, old_status, now))
        self.changed.append((group, diff))

    def write(self) -> None:
        if self.vanished:
            MonitorGroup.objects.filter(pk__in=self.vanished).delete()
        rows_insert(self.new)  # none: no statement
        rows_write(self.changed)
        rows_insert(self.changes)


def _groups_of(customer_ids: list[int]):
    return MonitorGroup.objects.filter(customer_id__in=customer_ids)


def _customers_locked(ids: list[int]):
    return Customer.objects.select_for_update().filter(pk__in=ids).order_by("pk")


def _group_change(row: Customer, group: MonitorGroup, old: int | None, now) -> StatusChange:
    return StatusChange(
        customer=row, group_id=group.group_id, group_name=group.name, from_status=old,
        to_status=group.status, at=now,
    )  # fmt: skip


def _fresh_values(
    row: Customer, started: datetime, now: datetime, lease: str, worst_changed: bool
) -> dict:
    """Set on `row` the outcome of a stored refresh; the fields to write (the worst status
    only when it changed: alike rows of a batch then share one UPDATE). `last_duration` is the
    caller's to add when `last_attempt_at` is among them."""
    row.data_fetched_at, row.last_success_at = started, now
    names = ["data_fetched_at", "last_success_at"]
    if worst_changed:
        names += ["worst_status", "worst_status_since"]
    names += _lease_drop(row, lease)
    if not (row.last_attempt_at and row.last_attempt_at > started):
        # The latest attempt: clear the error and the breaker.
        row.last_attempt_at = started
        row.last_error, row.last_error_kind = "", ""
        row.consecutive_failures, row.breaker_trips = 0, 0
        row.paused_until = row.throttled_until = None
        names += [name for name in OUTCOME_FIELDS if name != "last_duration"]
    return {name: getattr(row, name) for name in names}


__all__ = [
    "RefreshNowResult",
    "RefreshOutcome",
    "RefreshResult",
    "SyncReport",
    "SyncResult",
    "backoff_delay",
    "customer_refresh",
    "customer_refresh_now",
    "BATCH_MAX",
    "batch_size_for",
    "Fetched",
    "customer_store_groups",
    "customers_store_fetched",
    "customer_sync",
    "customers_refresh_batch",
    "customers_due",
    "customers_enqueue_due",
    "customers_sync_all",
    "lease_timeout",
    "leases_release",
    "oauth_call",
    "refreshes_enqueue",
    "with_credential_state",
]
