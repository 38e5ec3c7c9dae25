"""`Site24x7Client`: both auth generations, strings and dataclasses in and out."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .datacentres import DataCentre, get_data_centre
from .errors import ConfigurationError, ResponseError, Site24x7Error
from .http import RawAnswer, Timeout, Transport, origin_of
from .parsing import (
    parse_current_status,
    parse_monitor_groups_status,
    parse_msp_customers,
    parse_msp_monitors_status,
    parse_portals,
)
from .types import AccessToken, Auth, GroupStatus, MspCustomer, OAuthTokens, Portal

T = TypeVar("T")
MAX_TOKEN_LIFETIME = 3600
PORTAL_SCOPES = "Site24x7/site24x7api"
# Printable ASCII without spaces, quotes, commas, semicolons or backslashes: safe in a header.
_HEADER_SAFE = re.compile(r"[!#-+\--:<-\[\]-~]+")
# zaid is base64 ("j2db7FrteGyJWxa/JjpJlw=="), zaaid numeric: both are cookie-value safe.
_CUSTOMER_ID = re.compile(r"[A-Za-z0-9+/=_.\-]+")

MONITOR_GROUPS_STATUS = "monitor_groups_status"
CURRENT_STATUS = "current_status"
STATUS_SOURCES = (MONITOR_GROUPS_STATUS, CURRENT_STATUS)
SELECTOR_VIAS = ("param", "cookie")
# How each auth generation selects the customer: (query parameter, cookie name).
SELECTORS = {"legacy": ("zaid", "clientportal"), "oauth": ("zaaid", "zaaid")}
_STATUS_PATHS = {
    MONITOR_GROUPS_STATUS: ("/api/monitor_groups/status", {}, parse_monitor_groups_status),
    CURRENT_STATUS: ("/api/current_status", {"group_required": "true"}, parse_current_status),
}


@dataclass(frozen=True, slots=True, repr=False)
class ApiCall(Generic[T]):
    """One prepared request and the reader of its answer (`Site24x7Client.prepare_*`).

    `execute` sends it and reads the answer; `send_raw` hands back the unjudged answer (the
    probe). `secrets` are the values to scrub from any upstream text."""

    method: str
    url: str
    endpoint: str
    family: str
    headers: Mapping[str, str]
    read: Callable[[Any], T]
    params: Mapping[str, str] | None = None
    form: Mapping[str, str] | None = None
    cookie: str | None = None
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"ApiCall({self.method} {self.endpoint})"


class Site24x7Client:
    """Client for one data centre (or overridden hosts, e.g. the simulator). Thread-safe.

    `api_url` overrides the Site24x7 API host; `accounts_url` overrides both the Zoho accounts
    host and the legacy portal accounts host. Requests go to no other host.
    """

    def __init__(
        self,
        data_centre: str | DataCentre = "US",
        *,
        api_url: str | None = None,
        accounts_url: str | None = None,
        timeout: Timeout = (3.05, 10.0),
        accept_version: str = "2.0",
        user_agent: str = "msp_dashboard/1.0",
    ) -> None:
        dc = data_centre if isinstance(data_centre, DataCentre) else get_data_centre(data_centre)
        self.data_centre = dc
        self.api_url = _base_url(api_url or dc.api_url)
        self.accounts_url = _base_url(accounts_url or dc.accounts_url)
        portal = accounts_url or dc.portal_accounts_url
        self.portal_accounts_url = _base_url(portal) if portal else None
        self.accept_version = accept_version
        allowed = [self.api_url, self.accounts_url, *([self.portal_accounts_url] if portal else [])]
        self._transport = Transport(allowed_urls=allowed, timeout=timeout, user_agent=user_agent)

    def __repr__(self) -> str:
        return f"Site24x7Client({self.data_centre.code!r}, api_url={self.api_url!r})"

    def close(self) -> None:
        """Close pooled connections of every thread."""
        self._transport.close()

    def __enter__(self) -> Site24x7Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- legacy client-portal authtokens ----------------------------------------------------

    def list_portals(self, *, msp_authtoken: str) -> list[Portal]:
        """Customer portals (`portal_id`, `zaid`) visible to an MSP authtoken."""
        return self.execute(self.prepare_list_portals(msp_authtoken=msp_authtoken))

    def prepare_list_portals(self, *, msp_authtoken: str) -> ApiCall[list[Portal]]:
        token = _header_value(msp_authtoken, "msp_authtoken")
        return self._api_get(
            "/api/msp/customers/portals",
            endpoint="portals",
            auth=Auth.legacy(token),
            read=parse_portals,
        )

    def create_portal_authtoken(
        self, *, portal_id: str, email: str, password: str, desc: str = "msp_dashboard"
    ) -> str:
        """A new client-portal authtoken (at most 10 active per customer account)."""
        form = {
            "portal": str(portal_id),
            "email": email,
            "password": password,
            "client_portal": "true",
            "scopes": PORTAL_SCOPES,
            "desc": desc,
            "grant_type": "password",
        }
        call = self._accounts_post(
            self._portal_accounts("/accounts/client/authtoken"),
            endpoint="authtoken_create",
            family="portal",
            form=form,
            secrets=(password,),
            read=_created_token,
        )
        return self.execute(call)

    def delete_portal_authtoken(self, *, portal_id: str, authtoken: str) -> None:
        """Delete a client-portal authtoken; UnknownTokenError when the server does not know it."""
        call = self._accounts_post(
            self._portal_accounts("/accounts/client/authtoken/delete"),
            endpoint="authtoken_delete",
            family="portal",
            form={"portal": str(portal_id), "authtoken": authtoken},
            secrets=(authtoken,),
            read=_deleted,
        )
        self.execute(call)

    def monitor_groups_status(
        self, *, authtoken: str, zaid: str, zaid_via: str = "param"
    ) -> list[GroupStatus]:
        """Monitor groups of one customer.

        `zaid_via`: "param" sends `?zaid=<zaid>`, "cookie" sends `Cookie: clientportal=<zaid>`.
        """
        return self.customer_status(
            source=MONITOR_GROUPS_STATUS,
            auth=Auth.legacy(authtoken),
            customer_ref=zaid,
            via=zaid_via,
        )

    # --- either generation, either status source --------------------------------------------

    def customer_status(
        self, *, source: str, auth: Auth, customer_ref: str, via: str
    ) -> list[GroupStatus]:
        """Monitor groups of one customer from either status source, with either auth.

        `source`: "monitor_groups_status" (`GET /api/monitor_groups/status`, per-group rows) or
        "current_status" (`GET /api/current_status?group_required=true`, summarised per group;
        subgroups come back as groups with `top_group` True).
        `auth`: `Auth.legacy(authtoken)` selects the customer by zaid (`?zaid=` or
        `Cookie: clientportal=`); `Auth.oauth(access_token)` by zaaid (`Cookie: zaaid=` or
        `?zaaid=`). `customer_ref` is that zaid or zaaid; `via` is "param" or "cookie".
        """
        return self.execute(
            self.prepare_customer_status(
                source=source, auth=auth, customer_ref=customer_ref, via=via
            )
        )

    def prepare_customer_status(
        self, *, source: str, auth: Auth, customer_ref: str, via: str
    ) -> ApiCall[list[GroupStatus]]:
        if source not in _STATUS_PATHS:
            raise ValueError(f"source must be one of {', '.join(STATUS_SOURCES)}")
        path, params, read = _STATUS_PATHS[source]
        generation = auth.generation
        _header_value(auth.token, "authtoken" if generation == "legacy" else "access_token")
        param, cookie_name = SELECTORS[generation]
        ref = _customer_id(customer_ref, param)
        selected, cookie = _select_customer(via, param, cookie_name, ref)
        return self._api_get(
            path,
            endpoint=source,
            auth=auth,
            params={**params, **selected},
            cookie=cookie,
            read=read,
        )

    # --- OAuth 2.0 (Zoho accounts) ------------------------------------------------------------

    def exchange_grant_code(self, *, client_id: str, client_secret: str, code: str) -> OAuthTokens:
        """Exchange a Self Client grant code for a refresh token and a first access token."""
        form = {
            "grant_type": "authorization_code",
            "client_id": client_id,
            "client_secret": client_secret,
            "code": code,
        }
        return self.execute(
            self._oauth_token(form, secrets=(client_secret, code), read=_oauth_tokens)
        )

    def mint_access_token(
        self, *, client_id: str, client_secret: str, refresh_token: str
    ) -> AccessToken:
        """A new access token (Zoho allows 10 per refresh token per 10 minutes: cache it)."""
        return self.execute(
            self.prepare_mint_access_token(
                client_id=client_id, client_secret=client_secret, refresh_token=refresh_token
            )
        )

    def prepare_mint_access_token(
        self, *, client_id: str, client_secret: str, refresh_token: str
    ) -> ApiCall[AccessToken]:
        form = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        }
        return self._oauth_token(form, secrets=(client_secret, refresh_token), read=_access_token)

    def revoke_refresh_token(self, *, refresh_token: str) -> None:
        """Revoke a refresh token; UnknownTokenError when Zoho does not know it."""
        call = self._accounts_post(
            self.accounts_url + "/oauth/v2/token/revoke",
            endpoint="oauth_revoke",
            family="oauth",
            form={"token": refresh_token},
            secrets=(refresh_token,),
            read=_revoked,
        )
        self.execute(call)

    def list_msp_customers(self, *, access_token: str) -> list[MspCustomer]:
        """Customers (`name`, `zaaid`, `user_id`) of the MSP."""
        return self.execute(self.prepare_list_msp_customers(access_token=access_token))

    def prepare_list_msp_customers(self, *, access_token: str) -> ApiCall[list[MspCustomer]]:
        token = _header_value(access_token, "access_token")
        return self._api_get(
            "/api/short/msp/customers",
            endpoint="short_customers",
            auth=Auth.oauth(token),
            read=parse_msp_customers,
        )

    def current_status(
        self, *, access_token: str, zaaid: str, zaaid_via: str = "cookie"
    ) -> list[GroupStatus]:
        """Monitor groups of one customer, summarised from `current_status?group_required=true`.

        `zaaid_via`: "cookie" sends `Cookie: zaaid=<zaaid>` (documented), "param" `?zaaid=`.
        """
        return self.customer_status(
            source=CURRENT_STATUS,
            auth=Auth.oauth(access_token),
            customer_ref=zaaid,
            via=zaaid_via,
        )

    def msp_monitors_status(self, *, access_token: str) -> dict[str, list[GroupStatus]]:
        """Groups of every customer in one MSP-wide call, keyed by zaaid.

        Same `GroupStatus` values per customer as `current_status` gives for that customer
        (every group, subgroups included, with `top_group` True)."""
        return self.execute(self.prepare_msp_monitors_status(access_token=access_token))

    def prepare_msp_monitors_status(
        self, *, access_token: str
    ) -> ApiCall[dict[str, list[GroupStatus]]]:
        token = _header_value(access_token, "access_token")
        return self._api_get(
            "/api/msp/customers/monitors/status",
            endpoint="msp_monitors_status",
            auth=Auth.oauth(token),
            read=parse_msp_monitors_status,
        )

    # --- sending prepared calls ---------------------------------------------------------------

    def execute(self, call: ApiCall[T]) -> T:
        """Send a prepared call and read its answer: the value, or a typed `Site24x7Error`."""
        status, payload = self._transport.request(
            call.method,
            call.url,
            endpoint=call.endpoint,
            family=call.family,
            headers=call.headers,
            params=call.params,
            form=call.form,
            cookie=call.cookie,
            secrets=call.secrets,
        )
        with _status_on_error(status):
            return call.read(payload)

    def send_raw(self, call: ApiCall[Any]) -> RawAnswer:
        """Send a prepared call and return the unjudged answer (diagnostics only: the body may
        hold secrets). Raises `TransientError` when no answer arrives."""
        return self._transport.send_raw(
            call.method,
            call.url,
            endpoint=call.endpoint,
            headers=call.headers,
            params=call.params,
            form=call.form,
            cookie=call.cookie,
        )

    # --- plumbing -------------------------------------------------------------------------

    def _api_get(
        self,
        path: str,
        *,
        endpoint: str,
        auth: Auth,
        read: Callable[[Any], T],
        params: dict[str, str] | None = None,
        cookie: str | None = None,
    ) -> ApiCall[T]:
        headers = {
            "Authorization": f"{auth.scheme} {auth.token}",
            "Accept": f"application/json; version={self.accept_version}",
        }
        return ApiCall(
            method="GET",
            url=self.api_url + path,
            endpoint=endpoint,
            family="api",
            headers=headers,
            read=read,
            params=params or None,
            cookie=cookie,
            secrets=(auth.token,),
        )

    def _accounts_post(
        self,
        url: str,
        *,
        endpoint: str,
        family: str,
        form: dict[str, str],
        secrets: tuple[str, ...],
        read: Callable[[Any], T],
    ) -> ApiCall[T]:
        return ApiCall(
            method="POST",
            url=url,
            endpoint=endpoint,
            family=family,
            headers={"Accept": "application/json"},
            read=read,
            form=form,
            secrets=secrets,
        )

    def _oauth_token(
        self, form: dict[str, str], *, secrets: tuple[str, ...], read: Callable[[Any], T]
    ) -> ApiCall[T]:
        url = self.accounts_url + "/oauth/v2/token"
        return self._accounts_post(
            url, endpoint="oauth_token", family="oauth", form=form, secrets=secrets, read=read
        )

    def _portal_accounts(self, path: str) -> str:
        if self.portal_accounts_url is None:
            raise ConfigurationError(
                "the legacy portal accounts host is unknown for data centre "
                f"{self.data_centre.code}; pass accounts_url"
            )
        return self.portal_accounts_url + path


# --- validation -----------------------------------------------------------------------------


def _header_value(value: str, what: str) -> str:
    if not isinstance(value, str) or not _HEADER_SAFE.fullmatch(value):
        raise ConfigurationError(f"{what} is empty or contains characters not allowed in a header")
    return value


def _customer_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _CUSTOMER_ID.fullmatch(value):
        raise ConfigurationError(f"{what} is empty or contains unexpected characters")
    return value


def _base_url(url: str) -> str:
    """`url` without trailing slash (and without a trailing "/api"), validated."""
    url = url.strip().rstrip("/")
    if url.endswith("/api"):
        url = url[: -len("/api")]
    origin_of(url)
    return url


def _select_customer(
    via: str, param: str, cookie_name: str, value: str
) -> tuple[dict[str, str], str | None]:
    if via == "param":
        return {param: value}, None
    if via == "cookie":
        return {}, f"{cookie_name}={value}"
    raise ValueError(f"{param}_via must be 'param' or 'cookie'")


@contextmanager
def _status_on_error(status: int) -> Iterator[None]:
    """Record the HTTP status on errors raised while reading a 2xx answer (no chaining)."""
    try:
        yield
    except Site24x7Error as exc:
        if exc.http_status is None:
            exc.http_status = status
        raise


# --- readers of accounts answers ------------------------------------------------------------


def _portal_data(payload: Any, endpoint: str) -> dict[str, Any]:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise ResponseError("the accounts server answer has no data object", endpoint=endpoint)
    return data


def _created_token(payload: Any) -> str:
    token = _portal_data(payload, "authtoken_create").get("token")
    if not isinstance(token, str) or not token:
        raise ResponseError("the accounts server returned no token", endpoint="authtoken_create")
    return token


def _deleted(payload: Any) -> None:
    if _portal_data(payload, "authtoken_delete").get("response") not in (True, "true"):
        message = "the accounts server did not confirm the deletion"
        raise ResponseError(message, endpoint="authtoken_delete")


def _revoked(payload: Any) -> None:
    if isinstance(payload, dict) and str(payload.get("status", "")).lower() == "success":
        return
    raise ResponseError("Zoho did not confirm the revocation", endpoint="oauth_revoke")


def _oauth_tokens(payload: Any) -> OAuthTokens:
    access = _access_token(payload)
    refresh_token = payload.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        raise ResponseError("Zoho returned no refresh token", endpoint="oauth_token")
    return OAuthTokens(
        refresh_token=refresh_token, access_token=access.token, expires_in=access.expires_in
    )


def _access_token(payload: Any) -> AccessToken:
    if not isinstance(payload, dict):
        raise ResponseError("Zoho token answer is not an object", endpoint="oauth_token")
    token = payload.get("access_token")
    if not isinstance(token, str) or not token:
        raise ResponseError("Zoho returned no access token", endpoint="oauth_token")
    return AccessToken(token=token, expires_in=_expires_in(payload))


def _expires_in(payload: dict[str, Any]) -> int:
    """Lifetime in seconds: `expires_in_sec` if present, else `expires_in`, capped at 3600.

    Zoho sometimes reports `expires_in` in milliseconds (3600000); the cap covers that.
    """
    raw = payload.get("expires_in_sec", payload.get("expires_in", MAX_TOKEN_LIFETIME))
    seconds = _seconds(raw)
    if seconds is None:
        raise ResponseError("Zoho returned an invalid expires_in", endpoint="oauth_token")
    return max(0, min(seconds, MAX_TOKEN_LIFETIME))


def _seconds(raw: object) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return int(value) if math.isfinite(value) else None
