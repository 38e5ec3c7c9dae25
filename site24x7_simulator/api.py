"""The fake Site24x7 and Zoho accounts endpoints of the wire contract."""

from __future__ import annotations

import time

from . import views
from .auth import OAuthError
from .data import Customer
from .faults import Outcome
from .state import State
from .wire import (
    ERR_AUTHTOKEN,
    ERR_FORBIDDEN,
    ERR_INTERNAL,
    ERR_NOT_FOUND,
    ERR_OAUTH,
    Request,
    Response,
    api_error,
    api_ok,
    generic_error,
    html_error,
    json_response,
    legacy_fail,
    legacy_ok,
    throttled,
)

ROUTES = {
    ("GET", "/api/msp/customers/portals"): "portals",
    ("POST", "/accounts/client/authtoken"): "authtoken_create",
    ("POST", "/accounts/client/authtoken/delete"): "authtoken_delete",
    ("GET", "/api/monitor_groups/status"): "monitor_groups_status",
    ("POST", "/oauth/v2/token"): "oauth_token",
    ("POST", "/oauth/v2/token/revoke"): "oauth_revoke",
    ("GET", "/api/short/msp/customers"): "short_customers",
    ("GET", "/api/current_status"): "current_status",
    ("GET", "/api/msp/customers/monitors/status"): "msp_monitors_status",
}
LEGACY_ACCOUNTS = {"authtoken_create", "authtoken_delete"}
OAUTH_ACCOUNTS = {"oauth_token", "oauth_revoke"}
OAUTH_API = {"short_customers", "current_status", "msp_monitors_status"}


def not_found() -> Response:
    return api_error(ERR_NOT_FOUND)


# -- who is asking ---------------------------------------------------------------------------


def _selected(req: Request, param: str, cookie: str) -> tuple[str | None, str | None, bool]:
    """(value, 'param'|'cookie'|None, cookie conflict) for a customer selector."""
    value = req.query.get(param)
    cookies = set(req.cookies.get(cookie, []))
    if value:
        return value, "param", False
    if cookies:
        return req.cookies[cookie][0], "cookie", len(cookies) > 1
    return None, None, False


# Status endpoints accept both auth generations (a simulated choice, see the README): a
# legacy authtoken selects the customer by zaid, an OAuth token by zaaid.
_SELECTORS = {
    "zaid": ("zaid", "clientportal", "zaid_via"),
    "zaaid": ("zaaid", "zaaid", "zaaid_via"),
}
_NATIVE_SELECTOR = {"monitor_groups_status": "zaid", "current_status": "zaaid"}
_SCHEME_SELECTOR = {"zoho-authtoken": "zaid", "zoho-oauthtoken": "zaaid"}


def identify(state: State, endpoint: str, req: Request) -> Customer | None:
    """The customer a request is about, before any auth check (for counters and faults)."""
    if endpoint in _NATIVE_SELECTOR:
        found = {kind: _select(state, req, kind) for kind in _SELECTORS}
        scheme, _token = req.authorization()
        return found[_SCHEME_SELECTOR.get(scheme, _NATIVE_SELECTOR[endpoint])]
    if endpoint in LEGACY_ACCOUNTS:
        return state.by_portal.get(req.param("portal") or "")
    return None


def _select(state: State, req: Request, kind: str) -> Customer | None:
    param, cookie, counter = _SELECTORS[kind]
    value, via, conflict = _selected(req, param, cookie)
    _note_selector(state, counter, via, conflict)
    if not value:
        return None
    if kind == "zaid":
        # An unencoded '+' of a base64 zaid arrives as a space after query decoding.
        return state.by_zaid.get(value.replace(" ", "+"))
    return state.by_zaaid.get(value)


def _note_selector(state: State, counter: str, via: str | None, conflict: bool) -> None:
    if via:
        state.count(counter, via)
    if conflict:
        state.count("cookie_conflicts")


def credential(req: Request) -> str:
    """What a throttle counts calls against: the token or account a request presents."""
    _scheme, token = req.authorization()
    for value in (token, req.param("refresh_token"), req.param("token"), req.param("code")):
        if value:
            return value
    portal, email = req.param("portal"), req.param("email")
    return f"{portal}:{email}" if portal else req.client


# -- Site24x7 API ----------------------------------------------------------------------------


def portals(state: State, req: Request, _customer: Customer | None) -> Response:
    scheme, token = req.authorization()
    with state.lock:
        if scheme == "zoho-authtoken" and token == state.credentials.msp_authtoken:
            return api_ok([views.portal(c) for c in state.customers])
        if scheme == "zoho-authtoken" and token in state.authtokens.owner:
            return api_error(ERR_FORBIDDEN)
    return api_error(ERR_AUTHTOKEN)


def _status_denied(
    state: State, req: Request, customer: Customer | None, native: str
) -> Response | None:
    """The error answer of a status endpoint, or None when the caller may read ``customer``.

    A legacy authtoken must be the selected customer's own (the MSP authtoken is not enough);
    a valid OAuth access token may read any customer it selects. Auth is checked first; a
    request with neither scheme gets the endpoint's own bad-token answer (``native``)."""
    scheme, token = req.authorization()
    if scheme not in _SCHEME_SELECTOR:
        return api_error(ERR_OAUTH if native == "oauth" else ERR_AUTHTOKEN)
    if scheme == "zoho-oauthtoken":
        if not state.oauth.valid(token, time.monotonic()):
            return api_error(ERR_OAUTH)
        return api_error(ERR_FORBIDDEN) if customer is None else None
    legacy = scheme == "zoho-authtoken"
    owner = state.authtokens.owner.get(token) if legacy else None
    if owner is None and not (legacy and token == state.credentials.msp_authtoken):
        return api_error(ERR_AUTHTOKEN)
    if customer is None or owner != customer.zaaid:
        return api_error(ERR_FORBIDDEN)
    return None


def monitor_groups_status(state: State, req: Request, customer: Customer | None) -> Response:
    with state.lock:
        denied = _status_denied(state, req, customer, "legacy")
        if denied is not None:
            return denied
        data = [views.group_status(g) for g in customer.groups]
    return api_ok(data).cookie("clientportal", customer.zaid)


def _oauth_ok(state: State, req: Request) -> bool:
    scheme, token = req.authorization()
    return scheme == "zoho-oauthtoken" and state.oauth.valid(token, time.monotonic())


def _oauth_denied(req: Request) -> Response:
    scheme, _token = req.authorization()
    return api_error(ERR_AUTHTOKEN if scheme == "zoho-authtoken" else ERR_OAUTH)


def short_customers(state: State, req: Request, _customer: Customer | None) -> Response:
    with state.lock:
        if not _oauth_ok(state, req):
            return _oauth_denied(req)
        data = [views.short_customer(c) for c in state.customers]
    return api_ok(data)


def current_status(state: State, req: Request, customer: Customer | None) -> Response:
    with_groups = req.query.get("group_required", "true").lower() != "false"
    with state.lock:
        denied = _status_denied(state, req, customer, "oauth")
        if denied is not None:
            return denied
        data = views.current_status(customer, time.time(), with_groups)
    return api_ok(data).cookie("zaaid", customer.zaaid)


def msp_monitors_status(state: State, req: Request, _customer: Customer | None) -> Response:
    with state.lock:
        if not _oauth_ok(state, req):
            return _oauth_denied(req)
        everyone = list(state.customers)
    now, data = time.time(), []
    for customer in everyone:  # one customer at a time: a big MSP does not block the rest
        with state.lock:
            data.append(views.msp_customer_status(customer, now))
    return api_ok(data)


# -- legacy accounts (accounts.zohoportal.com) ------------------------------------------------


def authtoken_create(state: State, req: Request, customer: Customer | None) -> Response:
    portal, email, password = req.param("portal"), req.param("email"), req.param("password")
    if not (portal and email and password):
        return legacy_fail("MISSING_PARAMETER")
    if customer is None:
        return legacy_fail("INVALID_PORTAL")
    if email.strip().lower() != customer.email:
        return legacy_fail("NO_SUCH_USER")
    if password != customer.password:
        return legacy_fail("INVALID_PASSWORD")
    with state.lock:
        token = state.authtokens.create(customer)
    if token is None:
        return legacy_fail("EXCEEDED_MAXIMUM_ALLOWED_AUTHTOKENS")
    return legacy_ok({"token": token})


def authtoken_delete(state: State, req: Request, customer: Customer | None) -> Response:
    portal, token = req.param("portal"), req.param("authtoken")
    if not (portal and token):
        return legacy_fail("MISSING_PARAMETER")
    if customer is None:
        return legacy_fail("INVALID_PORTAL")
    with state.lock:
        deleted = state.authtokens.delete(customer, token)
    return legacy_ok({"response": True}) if deleted else legacy_fail("INVALID_AUTHTOKEN")


# -- Zoho OAuth (accounts.zoho.com) ------------------------------------------------------------


def oauth_token(state: State, req: Request, _customer: Customer | None) -> Response:
    grant = req.param("grant_type")
    if grant not in ("authorization_code", "refresh_token"):
        return json_response(state.oauth.options.error_status, {"error": "unsupported_grant_type"})
    try:
        with state.lock:
            return _grant(state, req, grant)
    except OAuthError as exc:
        return _oauth_failure(state, exc.error)


def _grant(state: State, req: Request, grant: str) -> Response:
    oauth, args = state.oauth, (req.param("client_id"), req.param("client_secret"))
    body = {"api_domain": f"http://{req.headers.get('host', 'localhost')}", "token_type": "Bearer"}
    if grant == "authorization_code":
        refresh, access = oauth.exchange(*args, req.param("code"), time.monotonic())
        state.counters.exchanges += 1
        body = {"access_token": access, "refresh_token": refresh, **body}
    else:
        access = oauth.mint(*args, req.param("refresh_token"), time.monotonic())
        state.counters.mints += 1
        body = {"access_token": access, **body}
    body["expires_in"] = oauth.expires_in()
    if oauth.options.expires_in_ms:
        body["expires_in_sec"] = int(oauth.options.access_ttl_s)
    return json_response(200, body)


_TOO_MANY_MINTS = "You have made too many requests continuously. Please try again after some time."


def _oauth_failure(state: State, error: str) -> Response:
    if error == "Access Denied":
        state.count("mints_refused")
        return json_response(400, {"error": error, "error_description": _TOO_MANY_MINTS})
    return json_response(state.oauth.options.error_status, {"error": error})


def oauth_revoke(state: State, req: Request, _customer: Customer | None) -> Response:
    token = req.param("token") or ""
    with state.lock:
        revoked = state.oauth.revoke(token)
    if revoked:
        return json_response(200, {"status": "success"})
    return json_response(400, {"status": "failure", "error": "invalid_token"})


HANDLERS = {
    "portals": portals,
    "authtoken_create": authtoken_create,
    "authtoken_delete": authtoken_delete,
    "monitor_groups_status": monitor_groups_status,
    "oauth_token": oauth_token,
    "oauth_revoke": oauth_revoke,
    "short_customers": short_customers,
    "current_status": current_status,
    "msp_monitors_status": msp_monitors_status,
}

# -- answers chosen by a fault ----------------------------------------------------------------

_MALFORMED = {
    "api": b'{"code":0,"message":"success","data":[{"group_name":"Web',
    "legacy": b'{"t":"json","data":{"tok',
    "oauth": b'{"access_token":"1000.',
}


def fault_response(endpoint: str, outcome: Outcome) -> Response:
    kind = outcome.kind
    if kind in ("hang", "reset"):
        return Response(action=kind, fault=outcome.fault)
    if kind == "malformed":
        return Response(status=200, body=_MALFORMED[_family(endpoint)])
    if kind == "html":
        return html_error(outcome.http_status)
    if kind == "invalid_token":
        return bad_token(endpoint)
    return error_for_status(endpoint, outcome.http_status, outcome.retry_after)


def _family(endpoint: str) -> str:
    if endpoint in LEGACY_ACCOUNTS:
        return "legacy"
    return "oauth" if endpoint in OAUTH_ACCOUNTS else "api"


def bad_token(endpoint: str) -> Response:
    """The endpoint's own answer to a bad token."""
    if endpoint in LEGACY_ACCOUNTS:
        return legacy_fail("INVALID_AUTHTOKEN")
    if endpoint == "oauth_token":
        return json_response(400, {"error": "invalid_code"})
    if endpoint == "oauth_revoke":
        return json_response(400, {"status": "failure", "error": "invalid_token"})
    return api_error(ERR_OAUTH if endpoint in OAUTH_API else ERR_AUTHTOKEN)


def error_for_status(endpoint: str, status: int, retry_after: int) -> Response:
    if status == 429:
        return throttled(retry_after)
    if status >= 500:
        return api_error((status, *ERR_INTERNAL[1:]))
    if status == 401:
        return bad_token(endpoint)
    if status == 403:
        return api_error(ERR_FORBIDDEN)
    if status == 404:
        return not_found()
    return generic_error(status)
