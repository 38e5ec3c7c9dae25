"""Token rules: legacy client-portal authtokens and Zoho OAuth refresh/access tokens.

The stores hold no lock of their own: ``State`` calls them under its lock. Times are
``time.monotonic()`` seconds, so tests that move the wall clock do not expire tokens.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field

from .data import Credentials, Customer

MAX_AUTHTOKENS = 10


class AuthtokenStore:
    """Client-portal authtokens: at most 10 active per customer account, never expire."""

    def __init__(self):
        self.owner: dict[str, str] = {}  # token -> zaaid
        self.by_customer: dict[str, list[str]] = {}

    def create(self, customer: Customer) -> str | None:
        tokens = self.by_customer.setdefault(customer.zaaid, [])
        if len(tokens) >= MAX_AUTHTOKENS:
            return None
        token = f"{customer.portal_id}.{customer.zuid}.{secrets.token_hex(29)[:57]}"
        tokens.append(token)
        self.owner[token] = customer.zaaid
        return token

    def delete(self, customer: Customer, token: str) -> bool:
        if self.owner.get(token) != customer.zaaid:
            return False
        del self.owner[token]
        self.by_customer[customer.zaaid].remove(token)
        return True

    def snapshot(self) -> dict[str, list[str]]:
        return {zaaid: list(tokens) for zaaid, tokens in self.by_customer.items() if tokens}


@dataclass
class OAuthOptions:
    expires_in_ms: bool = False  # answer expires_in in milliseconds (3600000)
    access_ttl_s: float = 3600.0  # real lifetime of new access tokens
    mint_cap: int = 10  # access tokens per refresh token per window
    mint_window_s: float = 600.0
    error_status: int = 200  # HTTP status of invalid_code / invalid_client answers
    max_refresh_tokens: int = 20  # per client; a new one beyond this deletes the oldest
    max_access_per_refresh: int = 30  # a new one beyond this deletes the oldest

    def update(self, values: dict) -> None:
        for name, value in values.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown oauth option {name!r}")
            kind = type(getattr(self, name))
            setattr(self, name, bool(value) if kind is bool else kind(value))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Refresh:
    token: str
    mints: deque = field(default_factory=deque)  # times of refresh_token grants
    access: OrderedDict = field(default_factory=OrderedDict)  # access token -> None


def _zoho_token() -> str:
    return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


class OAuthError(Exception):
    """An OAuth answer other than success: ``error`` is the Zoho error string."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


class OAuthStore:
    def __init__(self, credentials: Credentials):
        self.credentials = credentials
        self.options = OAuthOptions()
        self.refresh: OrderedDict[str, _Refresh] = OrderedDict()
        self.access: dict[str, tuple[str, float]] = {}  # token -> (refresh token, expires at)

    def _check_client(self, client_id: str | None, client_secret: str | None) -> None:
        creds = self.credentials
        if client_id != creds.client_id or client_secret != creds.client_secret:
            raise OAuthError("invalid_client")

    def exchange(self, client_id, client_secret, code, now: float) -> tuple[str, str]:
        """authorization_code grant: a new refresh token plus its first access token."""
        self._check_client(client_id, client_secret)
        if code != self.credentials.grant_code:
            raise OAuthError("invalid_code")
        while len(self.refresh) >= self.options.max_refresh_tokens:
            self.revoke(next(iter(self.refresh)))
        refresh = _Refresh(_zoho_token())
        self.refresh[refresh.token] = refresh
        return refresh.token, self._new_access(refresh, now)

    def mint(self, client_id, client_secret, refresh_token, now: float) -> str:
        """refresh_token grant, at most ``mint_cap`` per refresh token per sliding window."""
        self._check_client(client_id, client_secret)
        refresh = self.refresh.get(refresh_token or "")
        if refresh is None:
            raise OAuthError("invalid_code")
        while refresh.mints and refresh.mints[0] <= now - self.options.mint_window_s:
            refresh.mints.popleft()
        if len(refresh.mints) >= self.options.mint_cap:
            raise OAuthError("Access Denied")
        refresh.mints.append(now)
        return self._new_access(refresh, now)

    def _new_access(self, refresh: _Refresh, now: float) -> str:
        while len(refresh.access) >= self.options.max_access_per_refresh:
            oldest, _ = refresh.access.popitem(last=False)
            self.access.pop(oldest, None)
        token = _zoho_token()
        refresh.access[token] = None
        self.access[token] = (refresh.token, now + self.options.access_ttl_s)
        return token

    def revoke(self, token: str) -> bool:
        """Revoke a refresh token (and its access tokens) or a single access token."""
        refresh = self.refresh.pop(token, None)
        if refresh is not None:
            for access in refresh.access:
                self.access.pop(access, None)
            return True
        entry = self.access.pop(token, None)
        if entry is None:
            return False
        self.refresh[entry[0]].access.pop(token, None)
        return True

    def valid(self, token: str, now: float) -> bool:
        entry = self.access.get(token)
        return entry is not None and entry[1] > now

    def active_access_tokens(self, now: float) -> int:
        return sum(1 for _refresh, expires in self.access.values() if expires > now)

    def expire_access_tokens(self) -> int:
        """Make every current access token expired (refresh tokens stay)."""
        count = len(self.access)
        for token, (refresh, _) in list(self.access.items()):
            self.access[token] = (refresh, float("-inf"))
        return count

    def expires_in(self) -> int:
        seconds = int(self.options.access_ttl_s)
        return seconds * 1000 if self.options.expires_in_ms else seconds
