"""The simulator's whole mutable state behind one lock: data set, tokens, faults, counters."""

from __future__ import annotations

import random
import threading
import time

from . import data
from .auth import AuthtokenStore, OAuthStore
from .counters import ENDPOINT_KEYS, Counters
from .data import UP, Customer, Group
from .faults import FaultRegistry, Outcome

_DRIFT_BAD = {data.TROUBLE: 5, data.DOWN: 3, data.CRITICAL: 2}


class State:
    def __init__(self, customers: int = 40, seed: int = 1):
        self.lock = threading.RLock()
        self.size, self.seed = customers, seed
        self.counters = Counters()
        self.faults = FaultRegistry(seed)
        self._load()

    def _load(self) -> None:
        dataset = data.generate(self.size, self.seed)
        self.customers: list[Customer] = dataset.customers
        self.credentials = dataset.credentials
        self.by_zaaid = {c.zaaid: c for c in self.customers}
        self.by_zaid = {c.zaid: c for c in self.customers}
        self.by_portal = {c.portal_id: c for c in self.customers}
        self.by_name = {c.name.lower(): c for c in self.customers}
        # Monitor statuses are the only part of the data set that changes (set_status, drift),
        # so a reset restores them instead of generating everything again.
        self._initial = [(m, m.status) for c in self.customers for m in c.monitors()]
        self._fresh_session()

    def _fresh_session(self) -> None:
        self.authtokens = AuthtokenStore()
        self.oauth = OAuthStore(self.credentials)
        self.drift_rng = random.Random(f"{self.seed}/drift")

    def reset(self) -> None:
        """Back to the seed's initial state: statuses, tokens, OAuth options, faults, counters."""
        with self.lock:
            self.faults.clear()
            self.faults = FaultRegistry(self.seed)
            self.counters.reset()
            for monitor, status in self._initial:
                monitor.status = status
            self._fresh_session()

    # -- look-ups ---------------------------------------------------------------------------

    def find(self, key) -> Customer | None:
        """A customer by zaaid, zaid, portal_id or (case-insensitive) name."""
        key = str(key)
        for index in (self.by_zaaid, self.by_zaid, self.by_portal):
            if key in index:
                return index[key]
        return self.by_name.get(key.lower())

    def find_group(self, customer: Customer, group_id) -> Group | None:
        return next((g for g in customer.groups if g.group_id == str(group_id)), None)

    # -- per-request bookkeeping ------------------------------------------------------------

    def begin(
        self, endpoint: str, customer: Customer | None, credential: str, conn_gen: int
    ) -> tuple[Outcome, int]:
        """Count an API request and ask the faults about it: (Outcome, counters generation).
        A connection is counted once per counters generation (``conn_gen`` is its last)."""
        zaaid = customer.zaaid if customer else None
        with self.lock:
            if conn_gen != self.counters.generation:
                self.counters.connections += 1
            self.counters.request(endpoint, zaaid)
            outcome = self.faults.decide(endpoint, zaaid, credential, time.monotonic())
            return outcome, self.counters.generation

    def count(self, attribute: str, key: str | None = None) -> None:
        with self.lock:
            if key is None:
                setattr(self.counters, attribute, getattr(self.counters, attribute) + 1)
            else:
                getattr(self.counters, attribute)[key] += 1

    def responded(self, status: int | None, dropped: str | None = None) -> None:
        with self.lock:
            if dropped:
                self.counters.dropped[dropped] += 1
            else:
                self.counters.response(status)

    def accepted_connection(self) -> None:
        with self.lock:
            self.counters.connections_total += 1

    # -- statuses ---------------------------------------------------------------------------

    def set_status(self, customer: Customer, group: Group, status: int) -> None:
        """Make ``group`` show ``status``: its first monitor takes it, the others go Up, so
        the group (worst of its monitors) and ``error_monitors`` agree in every view."""
        with self.lock:
            for index, monitor in enumerate(group.monitors):
                monitor.status = status if index == 0 else UP

    def drift(self, steps: int = 1) -> list[dict]:
        """A seeded random walk: a few monitors change status, most bad ones heal."""
        changes = []
        with self.lock:
            monitors = [(c, m) for c in self.customers for m in c.monitors()]
            if not monitors:
                return changes
            picks = max(5, len(monitors) // 30)
            for _ in range(steps):
                for customer, monitor in self.drift_rng.sample(monitors, min(picks, len(monitors))):
                    new = self._drift_status(monitor.status)
                    if new != monitor.status:
                        monitor.status = new
                        changes.append(
                            {
                                "zaaid": customer.zaaid,
                                "monitor_id": monitor.monitor_id,
                                "status": new,
                            }
                        )
        return changes

    def _drift_status(self, status: int) -> int:
        rng = self.drift_rng
        if status != UP:
            return UP if rng.random() < 0.6 else status
        if rng.random() < 0.008:  # about 1% of monitors bad in the long run: mostly green
            return rng.choices(list(_DRIFT_BAD), weights=list(_DRIFT_BAD.values()))[0]
        return status

    @property
    def endpoints(self) -> tuple[str, ...]:
        return ENDPOINT_KEYS
