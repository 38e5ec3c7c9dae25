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

from tokens.upstream import call_budget_for


class BudgetExhausted(Exception):
    """No call: the budget is spent. `wait` is the number of seconds until it may be."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"call budget spent; next call allowed in {wait:.0f} s")
        self.wait = wait


def budget_key(*, credential_id: int, endpoint: str, account: str | int) -> str:
    return f"budget:{credential_id}:{endpoint}:{account}"


def budget_take(*, credential_id: int, endpoint: str, account: str | int) -> None:
    """Count one upstream call, or raise BudgetExhausted (and count nothing). The budget is
    SITE24X7_CALL_BUDGETS[endpoint], else SITE24X7_CALL_BUDGET (tokens.upstream)."""
    budget = call_budget_for(endpoint)
    window = settings.SITE24X7_CALL_BUDGET_WINDOW
    now = time.time()
    index = int(now // window)
    base = budget_key(credential_id=credential_id, endpoint=endpoint, account=account)
    current, previous = f"{base}:{index}", f"{base}:{index - 1}"
    with _counter_lock():
        cache.add(current, 0, timeout=2 * window + 5)
        count = cache.incr(current)
        earlier = cache.get(previous) or 0
        if count + earlier <= budget:
            return
        cache.decr(current)
    window_end = (index + 1) * window - now
    # The current count becomes the previous one at the boundary: if it alone fills the
    # budget, the next window is closed as well.
    raise BudgetExhausted(window_end + (window if count - 1 >= budget else 0))


@contextlib.contextmanager
def _counter_lock() -> Iterator[None]:
    if isinstance(caches["default"], RedisCache):
        yield  # INCR is atomic in Redis
        return
    path = settings.VAR_DIR / "call-budget.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
