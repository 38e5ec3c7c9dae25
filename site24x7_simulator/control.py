"""The ``/_sim/`` control surface: JSON in, JSON out, no auth (a loopback test tool)."""

from __future__ import annotations

import time

from . import views
from .state import State
from .wire import Request, Response, json_response


class ControlError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _customer(state: State, key):
    customer = state.find(key) if key not in (None, "") else None
    if customer is None:
        raise ControlError(f"unknown customer {key!r}", 404)
    return customer


# Each operation takes (state, payload dict) and returns a JSON-able dict. The Simulator's
# in-process helpers call the same functions.


def customers(state: State, _payload: dict) -> dict:
    with state.lock:
        return {"customers": [views.sim_customer(c) for c in state.customers]}


def credentials(state: State, _payload: dict) -> dict:
    creds = state.credentials
    return {
        "msp_authtoken": creds.msp_authtoken,
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "grant_code": creds.grant_code,
    }


def tokens(state: State, _payload: dict) -> dict:
    with state.lock:
        return {
            "tokens": state.authtokens.snapshot(),
            "refresh_tokens": len(state.oauth.refresh),
            "access_tokens": state.oauth.active_access_tokens(time.monotonic()),
        }


def set_status(state: State, payload: dict) -> dict:
    customer = _customer(state, payload.get("customer"))
    group = state.find_group(customer, payload.get("group_id"))
    if group is None:
        raise ControlError(f"unknown group {payload.get('group_id')!r} for {customer.name}", 404)
    try:
        status = int(str(payload.get("status")))
    except ValueError as exc:
        raise ControlError("status must be an integer") from exc
    state.set_status(customer, group, status)
    with state.lock:
        return {"zaaid": customer.zaaid, "group": views.sim_group(group)}


def add_fault(state: State, payload: dict) -> dict:
    customer = payload.get("customer")
    zaaid = _customer(state, customer).zaaid if customer not in (None, "") else None
    with state.lock:
        try:
            fault = state.faults.add(payload, zaaid, state.endpoints)
        except (TypeError, ValueError) as exc:
            raise ControlError(str(exc)) from exc
        return {"id": fault.id, "fault": fault.to_dict()}


def list_faults(state: State, _payload: dict) -> dict:
    with state.lock:
        return {"faults": state.faults.snapshot()}


def clear_faults(state: State, payload: dict) -> dict:
    with state.lock:
        return {"cleared": state.faults.clear(payload.get("id"))}


def counters(state: State, _payload: dict) -> dict:
    with state.lock:
        return state.counters.snapshot()


def reset_counters(state: State, _payload: dict) -> dict:
    with state.lock:
        state.counters.reset()
    return {"ok": True}


def reset(state: State, _payload: dict) -> dict:
    state.reset()
    return {"ok": True}


def oauth(state: State, payload: dict) -> dict:
    """Read (GET) or change (POST) the OAuth options; ``expire_access_tokens: true`` expires
    every current access token at once."""
    with state.lock:
        expire = payload.pop("expire_access_tokens", False)
        try:
            state.oauth.options.update(payload)
        except (TypeError, ValueError) as exc:
            raise ControlError(str(exc)) from exc
        expired = state.oauth.expire_access_tokens() if expire else 0
        return {"options": state.oauth.options.to_dict(), "expired": expired}


def drift(state: State, payload: dict) -> dict:
    return {"changes": state.drift(int(payload.get("steps", 1)))}


def health(state: State, _payload: dict) -> dict:
    return {"ok": True, "customers": len(state.customers), "seed": state.seed}


ROUTES = {
    ("GET", "/_sim/health"): health,
    ("GET", "/_sim/customers"): customers,
    ("GET", "/_sim/credentials"): credentials,
    ("GET", "/_sim/tokens"): tokens,
    ("POST", "/_sim/status"): set_status,
    ("GET", "/_sim/faults"): list_faults,
    ("POST", "/_sim/faults"): add_fault,
    ("POST", "/_sim/faults/clear"): clear_faults,
    ("GET", "/_sim/counters"): counters,
    ("POST", "/_sim/counters/reset"): reset_counters,
    ("POST", "/_sim/reset"): reset,
    ("GET", "/_sim/oauth"): oauth,
    ("POST", "/_sim/oauth"): oauth,
    ("POST", "/_sim/drift"): drift,
}


def dispatch(state: State, req: Request) -> Response:
    operation = ROUTES.get((req.method, req.path))
    if operation is None:
        return json_response(404, {"error": f"no control operation {req.method} {req.path}"})
    try:
        payload = req.json()
        payload.update((k, v) for k, v in req.query.items() if k not in payload)
        return json_response(200, operation(state, payload))
    except ControlError as exc:
        return json_response(exc.status, {"error": str(exc)})
    except ValueError as exc:  # bad JSON
        return json_response(400, {"error": f"bad request: {exc}"})
