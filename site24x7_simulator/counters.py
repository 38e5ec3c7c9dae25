"""Request counters for tests and benchmarks (``GET /_sim/counters``); /_sim/ is not counted."""

from __future__ import annotations

import copy

ENDPOINT_KEYS = (
    "portals",
    "authtoken_create",
    "authtoken_delete",
    "monitor_groups_status",
    "oauth_token",
    "oauth_revoke",
    "short_customers",
    "current_status",
    "msp_monitors_status",
)

_SNAPSHOT = (
    "requests",
    "by_customer",
    "connections",
    "connections_total",
    "responses",
    "dropped",
    "mints",
    "exchanges",
    "mints_refused",
    "zaaid_via",
    "zaid_via",
    "cookie_conflicts",
)


class Counters:
    """Guarded by the state lock. ``generation`` changes on every reset, so a keep-alive
    connection opened before a reset is counted again when it next carries an API request."""

    def __init__(self):
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        self.generation += 1
        self.requests = dict.fromkeys(ENDPOINT_KEYS, 0)
        self.by_customer: dict[str, dict[str, int]] = {}
        self.connections = 0  # TCP connections that carried at least one API request
        self.connections_total = 0  # every accepted TCP connection, /_sim/ ones included
        self.responses: dict[str, int] = {}
        self.dropped = {"hang": 0, "reset": 0}
        self.mints = 0  # access tokens minted from a refresh token (refresh_token grant)
        self.exchanges = 0  # grant codes exchanged (authorization_code grant)
        self.mints_refused = 0  # refresh_token grants refused by the 10-per-10-minutes cap
        self.zaaid_via = {"cookie": 0, "param": 0}
        self.zaid_via = {"cookie": 0, "param": 0}
        self.cookie_conflicts = 0  # one Cookie header naming two different customers

    def request(self, endpoint: str, zaaid: str | None) -> None:
        self.requests[endpoint] += 1
        if zaaid is not None:
            per = self.by_customer.setdefault(zaaid, {})
            per[endpoint] = per.get(endpoint, 0) + 1

    def response(self, status: int | str) -> None:
        key = str(status)
        self.responses[key] = self.responses.get(key, 0) + 1

    def snapshot(self) -> dict:
        return {name: copy.deepcopy(getattr(self, name)) for name in _SNAPSHOT}
