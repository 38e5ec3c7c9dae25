"""The call budget (REL-08): at most SITE24X7_CALL_BUDGET calls per SITE24X7_CALL_BUDGET_WINDOW
seconds for one credential, endpoint and customer account, shared by every worker.

Why the key holds the customer too: Site24x7 throttles "per API per account", and the account
is the customer (each customer is its own Site24x7 account under the MSP). With legacy
authtokens the credential is the customer's own token, so the customer adds nothing. With
OAuth one MSP identity reads every customer (the zaaid cookie selects the account), so a key
of credential and endpoint alone would make 500 customers share 40 calls per 5 minutes,
starving all but 40 of them, while Site24x7 would count each customer's calls separately.
MSP-wide calls (the customer lists of a sync) use the account "msp".

Check-and-count: two fixed windows per key, and a call goes ahead only when this window's count
(including the call) plus the previous window's count stays within the budget. Any span of
WINDOW seconds overlaps at most two fixed windows, so no such span ever holds more than BUDGET
calls (a plain fixed window would allow twice the budget around a boundary). The cost: a steady
caller gets half the budget per window, 20 calls per 5 minutes by default, against the 1 (plus
at most 3 retries) a customer needs per refresh interval.

The counter is an atomic INCR in Redis (CI, production). Django's file cache has no atomic
increment, so there the count runs under an exclusive file lock, shared by the processes of the
demo on its one machine."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

from tokens.upstream import call_budget_for

CACHE_ERRORS = (RedisError, OSError)
"""What the cache raises when Redis (or the demo's cache folder) is not there."""


class BudgetExhausted(Exception):
    """No call: the budget is spent. `wait` is the number of seconds until it may be."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"call budget spent; next call allowed in {wait:.0f} s")
        self.wait = wait


class BudgetUnavailable(BudgetExhausted):
    """No call: the shared counter (the cache) did not answer, so the budget cannot be checked.
    Fails closed: no call is made on an unknown budget; the next round tries again (REL-10)."""

    def __init__(self) -> None:
        Exception.__init__(self, "the shared cache did not answer: no call made")
        self.wait = 0.0


def budget_key(*, credential_id: int, endpoint: str, account: str | int) -> str:
    return f"budget:{credential_id}:{endpoint}:{account}"


def budget_take(*, credential_id: int, endpoint: str, account: str | int) -> None:
    """Count one upstream call, or raise BudgetExhausted (and count nothing; BudgetUnavailable
    when the cache is down). The budget is SITE24X7_CALL_BUDGETS[endpoint], else
    SITE24X7_CALL_BUDGET (tokens.upstream)."""
    refused = budgets_take([(credential_id, endpoint, account)])[0]
    if refused is not None:
        raise refused


def budgets_take(calls: list[tuple[int, str, str | int]]) -> list[BudgetExhausted | None]:
    """`budget_take` for several calls (credential id, endpoint, account), in one round trip
    to Redis: for each, None when it was counted, else the BudgetExhausted it would raise."""
    if not calls:
        return []
    window = settings.SITE24X7_CALL_BUDGET_WINDOW
    now = time.time()
    index = int(now // window)
    keys = []
    for credential_id, endpoint, account in calls:
        base = budget_key(credential_id=credential_id, endpoint=endpoint, account=account)
        keys.append((f"{base}:{index}", f"{base}:{index - 1}"))
    window_end = (index + 1) * window - now
    results: list[BudgetExhausted | None] = []
    try:
        counts = _count(keys, ttl=2 * window + 5)
        for (current, _), (count, earlier), call in zip(keys, counts, calls, strict=True):
            budget = call_budget_for(call[1])
            if count + earlier <= budget:
                results.append(None)
                continue
            cache.decr(current)
            # The current count becomes the previous one at the boundary: if it alone fills
            # the budget, the next window is closed as well.
            results.append(BudgetExhausted(window_end + (window if count - 1 >= budget else 0)))
    except CACHE_ERRORS:
        return [BudgetUnavailable() for _ in calls]
    return results


def _count(keys: list[tuple[str, str]], *, ttl: int) -> list[tuple[int, int]]:
    """For each (this window's key, the previous one's): count one call in this window, and
    (that count, the previous window's count)."""
    if isinstance(caches["default"], RedisCache):
        return _count_in_redis(keys, ttl=ttl)
    counts = []
    with _counter_lock():
        for current, previous in keys:
            cache.add(current, 0, timeout=ttl)
            counts.append((cache.incr(current), cache.get(previous) or 0))
    return counts


def _count_in_redis(keys: list[tuple[str, str]], *, ttl: int) -> list[tuple[int, int]]:
    """`_count` in one round trip (a refresh is on the hot path): for each key SET NX with
    the TTL, INCR and GET, all in one MULTI. The values are the cache's own (Django stores
    integers as plain Redis integers), so cache.get/incr/decr see the same counters. Django's
    RedisCache has no public pipeline, hence its client."""
    backend = caches["default"]
    pipe = backend._cache.get_client(write=True).pipeline(transaction=True)
    for current, previous in keys:
        key = backend.make_and_validate_key(current)
        pipe.set(key, 0, ex=ttl, nx=True)
        pipe.incr(key)
        pipe.get(backend.make_and_validate_key(previous))
    answers = pipe.execute()
    return [(int(answers[i + 1]), int(answers[i + 2] or 0)) for i in range(0, len(answers), 3)]


@contextlib.contextmanager
def _counter_lock() -> Iterator[None]:
    """Django's file cache has no atomic increment: count under an exclusive file lock."""
    path = settings.VAR_DIR / "call-budget.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
