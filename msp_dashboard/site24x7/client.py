"""`Site24x7Client`: both auth generations, strings and dataclasses in and out."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .datacentres import DataCentre, get_data_centre
from .errors import ConfigurationError, ResponseError, Site24x7Error
from .http import Timeout, Transport, origin_of
from .parsing import (
    parse_current_status,
    parse_monitor_groups_status,
    parse_msp_customers,
    parse_msp_monitors_status,
    parse_portals,
)
from .types import AccessToken, GroupStatus, MspCustomer, OAuthTokens, Portal

T = TypeVar("T")
MAX_TOKEN_LIFETIME = 3600
PORTAL_SCOPES = "Site24x7/site24x7api"
# Printable ASCII without spaces, quotes, commas, semicolons or backslashes: safe in a header.
_HEADER_SAFE = re.compile(r"[!#-+\--:<-\[\]-~]+")
# zaid is base64 ("j2db7FrteGyJWxa/JjpJlw=="), zaaid numeric: both are cookie-value safe.
_CUSTOMER_ID = re.compile(r"[A-Za-z0-9+/=_.\-]+")


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
        token = _header_value(msp_authtoken, "msp_authtoken")
        return self._api_get(
            "/api/msp/customers/portals",
            endpoint="portals",
            authorization=f"Zoho-authtoken {token}",
            secret=token,
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
        return self._accounts_post(
            self._portal_accounts("/accounts/client/authtoken"),
            endpoint="authtoken_create",
            family="portal",
            form=form,
            secrets=(password,),
            read=_created_token,
        )

    def delete_portal_authtoken(self, *, portal_id: str, authtoken: str) -> None:
        """Delete a client-portal authtoken; UnknownTokenError when the server does not know it."""
        self._accounts_post(
            self._portal_accounts("/accounts/client/authtoken/delete"),
            endpoint="authtoken_delete",
            family="portal",
            form={"portal": str(portal_id), "authtoken": authtoken},
            secrets=(authtoken,),
            read=_deleted,
        )

    def monitor_groups_status(
        self, *, authtoken: str, zaid: str, zaid_via: str = "param"
    ) -> list[GroupStatus]:
        """Monitor groups of one customer.

        `zaid_via`: "param" sends `?zaid=<zaid>`, "cookie" sends `Cookie: clientportal=<zaid>`.
        """
        token = _header_value(authtoken, "authtoken")
        zaid = _customer_id(zaid, "zaid")
        params, cookie = _select_customer(zaid_via, "zaid", "clientportal", zaid)
        return self._api_get(
            "/api/monitor_groups/status",
            endpoint="monitor_groups_status",
            authorization=f"Zoho-authtoken {token}",
            params=params,
            cookie=cookie,
            secret=token,
            read=parse_monitor_groups_status,
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
        return self._oauth_token(form, secrets=(client_secret, code), read=_oauth_tokens)

    def mint_access_token(
        self, *, client_id: str, client_secret: str, refresh_token: str
    ) -> AccessToken:
        """A new access token (Zoho allows 10 per refresh token per 10 minutes: cache it)."""
        form = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        }
        return self._oauth_token(form, secrets=(client_secret, refresh_token), read=_access_token)

    def revoke_refresh_token(self, *, refresh_token: str) -> None:
        """Revoke a refresh token; UnknownTokenError when Zoho does not know it."""
        self._accounts_post(
            self.accounts_url + "/oauth/v2/token/revoke",
            endpoint="oauth_revoke",
            family="oauth",
            form={"token": refresh_token},
            secrets=(refresh_token,),
            read=_revoked,
        )

    def list_msp_customers(self, *, access_token: str) -> list[MspCustomer]:
        """Customers (`name`, `zaaid`, `user_id`) of the MSP."""
        token = _header_value(access_token, "access_token")
        return self._api_get(
            "/api/short/msp/customers",
            endpoint="short_customers",
            authorization=f"Zoho-oauthtoken {token}",
            secret=token,
            read=parse_msp_customers,
        )

    def current_status(
        self, *, access_token: str, zaaid: str, zaaid_via: str = "cookie"
    ) -> list[GroupStatus]:
        """Monitor groups of one customer, summarised from `current_status?group_required=true`.

        `zaaid_via`: "cookie" sends `Cookie: zaaid=<zaaid>` (documented), "param" `?zaaid=`.
        """
        token = _header_value(access_token, "access_token")
        zaaid = _customer_id(zaaid, "zaaid")
        params, cookie = _select_customer(zaaid_via, "zaaid", "zaaid", zaaid)
        return self._api_get(
            "/api/current_status",
            endpoint="current_status",
            authorization=f"Zoho-oauthtoken {token}",
            params={"group_required": "true", **params},
            cookie=cookie,
            secret=token,
            read=parse_current_status,
        )

    def msp_monitors_status(self, *, access_token: str) -> dict[str, list[GroupStatus]]:
        """Groups of every customer in one MSP-wide call, keyed by zaaid."""
        token = _header_value(access_token, "access_token")
        return self._api_get(
            "/api/msp/customers/monitors/status",
            endpoint="msp_monitors_status",
            authorization=f"Zoho-oauthtoken {token}",
            secret=token,
            read=parse_msp_monitors_status,
        )

    # --- plumbing -------------------------------------------------------------------------

    def _api_get(
        self,
        path: str,
        *,
        endpoint: str,
        authorization: str,
        secret: str,
        read: Callable[[Any], T],
        params: dict[str, str] | None = None,
        cookie: str | None = None,
    ) -> T:
        headers = {
            "Authorization": authorization,
            "Accept": f"application/json; version={self.accept_version}",
        }
        status, payload = self._transport.request(
            "GET",
            self.api_url + path,
            endpoint=endpoint,
            family="api",
            headers=headers,
            params=params,
            cookie=cookie,
            secrets=(secret,),
        )
        with _status_on_error(status):
            return read(payload)

    def _accounts_post(
        self,
        url: str,
        *,
        endpoint: str,
        family: str,
        form: dict[str, str],
        secrets: tuple[str, ...],
        read: Callable[[Any], T],
    ) -> T:
        status, payload = self._transport.request(
            "POST",
            url,
            endpoint=endpoint,
            family=family,
            headers={"Accept": "application/json"},
            form=form,
            secrets=secrets,
        )
        with _status_on_error(status):
            return read(payload)

    def _oauth_token(
        self, form: dict[str, str], *, secrets: tuple[str, ...], read: Callable[[Any], T]
    ) -> T:
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
