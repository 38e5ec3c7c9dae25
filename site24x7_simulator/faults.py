"""Injected faults: what to do to the next matching API requests.

A fault matches a request when its ``endpoint`` (counter key) and ``customer`` (zaaid), when
set, equal the request's. ``latency`` faults add up and let the request go on; of the other
kinds the oldest matching one that fires decides the answer. ``count`` limits a fault to the
next N requests it fires on, then it disappears (a request already hanging keeps hanging).
The registry has no lock of its own: ``State`` calls it under its lock.
"""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from dataclasses import dataclass, field, fields

KINDS = (
    "latency",
    "status",
    "error_rate",
    "malformed",
    "html",
    "hang",
    "reset",
    "invalid_token",
    "throttle",
)
DEFAULT_STATUS = {"html": 502, "status": 500, "error_rate": 500}
HANG_CAP_S = 120.0


@dataclass
class Fault:
    id: str
    kind: str
    customer: str | None = None  # zaaid
    endpoint: str | None = None
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    http_status: int | None = None
    retry_after: int = 1
    rate: float = 1.0
    count: int | None = None
    calls: int = 10
    window_s: float = 60.0
    lock_s: float = 60.0
    hang_s: float = HANG_CAP_S
    fired: int = 0
    released: threading.Event = field(default_factory=threading.Event, repr=False)
    windows: dict = field(default_factory=dict, repr=False)  # throttle state per credential

    def matches(self, endpoint: str, zaaid: str | None) -> bool:
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        return self.customer is None or self.customer == zaaid

    def to_dict(self) -> dict:
        hidden = {"released", "windows"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden}


@dataclass
class Outcome:
    """The faults' verdict for one request: a delay, then maybe an abnormal answer."""

    delay_s: float = 0.0
    kind: str | None = None
    http_status: int = 0
    retry_after: int = 0
    fault: Fault | None = None


_SPEC_FIELDS = {
    "latency_ms": float,
    "jitter_ms": float,
    "http_status": int,
    "retry_after": int,
    "rate": float,
    "count": int,
    "calls": int,
    "window_s": float,
    "lock_s": float,
    "hang_s": float,
}


def _build(fault_id: str, spec: dict, customer: str | None, endpoints) -> Fault:
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    endpoint = spec.get("endpoint") or None
    if endpoint is not None and endpoint not in endpoints:
        raise ValueError(f"unknown endpoint {endpoint!r}")
    fault = Fault(id=fault_id, kind=kind, customer=customer, endpoint=endpoint)
    for name, cast in _SPEC_FIELDS.items():
        if spec.get(name) is not None:
            setattr(fault, name, cast(spec[name]))
    if fault.http_status is None:
        fault.http_status = DEFAULT_STATUS.get(kind, 500)
    fault.hang_s = min(fault.hang_s, HANG_CAP_S)
    return fault


class FaultRegistry:
    def __init__(self, seed: int):
        self.faults: dict[str, Fault] = {}
        self.retired: dict[str, Fault] = {}  # used-up hang faults, still releasable
        self.rng = random.Random(f"{seed}/faults")
        self.next_id = 1

    def add(self, spec: dict, customer: str | None, endpoints) -> Fault:
        fault = _build(f"f{self.next_id}", spec, customer, endpoints)
        self.next_id += 1
        self.faults[fault.id] = fault
        return fault

    def clear(self, fault_id: str | None = None) -> int:
        """Remove one fault (or all) and release the requests they hold."""
        if fault_id is None:
            gone = list(self.faults.values()) + list(self.retired.values())
            self.faults.clear()
            self.retired.clear()
        else:
            found = (self.faults.pop(fault_id, None), self.retired.pop(fault_id, None))
            gone = [fault for fault in found if fault]
        for fault in gone:
            fault.released.set()
        return len(gone)

    def snapshot(self) -> list[dict]:
        return [fault.to_dict() for fault in self.faults.values()]

    def decide(self, endpoint: str, zaaid: str | None, credential: str, now: float) -> Outcome:
        outcome = Outcome()
        for fault in list(self.faults.values()):
            if not fault.matches(endpoint, zaaid):
                continue
            if fault.kind == "latency":
                outcome.delay_s += self._latency(fault)
                self._used(fault)
            elif outcome.kind is None and self._fires(fault, endpoint, credential, now, outcome):
                outcome.kind, outcome.fault = fault.kind, fault
                self._used(fault)
        return outcome

    def _latency(self, fault: Fault) -> float:
        return (fault.latency_ms + self.rng.uniform(0, fault.jitter_ms)) / 1000.0

    def _fires(self, fault: Fault, endpoint, credential, now: float, outcome: Outcome) -> bool:
        outcome.http_status = fault.http_status or 500
        outcome.retry_after = fault.retry_after
        if fault.kind == "error_rate":
            return self.rng.random() < fault.rate
        if fault.kind == "throttle":
            return self._throttled(fault, (endpoint, credential), now, outcome)
        return True

    @staticmethod
    def _throttled(fault: Fault, key, now: float, outcome: Outcome) -> bool:
        """``calls`` per ``window_s`` per (endpoint, credential), then 429 for ``lock_s``."""
        window = fault.windows.setdefault(key, {"hits": deque(), "locked_until": 0.0})
        outcome.http_status = 429
        if now < window["locked_until"]:
            outcome.retry_after = math.ceil(window["locked_until"] - now)
            return True
        hits = window["hits"]
        while hits and hits[0] <= now - fault.window_s:
            hits.popleft()
        if len(hits) < fault.calls:
            hits.append(now)
            return False
        hits.clear()
        window["locked_until"] = now + fault.lock_s
        outcome.retry_after = math.ceil(fault.lock_s)
        return True

    def _used(self, fault: Fault) -> None:
        fault.fired += 1
        if fault.count is None or fault.fired < fault.count:
            return
        self.faults.pop(fault.id, None)
        if fault.kind == "hang":
            self.retired[fault.id] = fault
