"""Plain dataclasses returned by the client. Secrets are masked in every repr."""

from __future__ import annotations

from dataclasses import dataclass

from .redact import mask_secret
from .status import Status


@dataclass(frozen=True, slots=True)
class GroupStatus:
    """One monitor group of one customer, as both auth generations normalise to."""

    group_id: str
    name: str
    status: Status
    monitors: int
    error_monitors: int
    top_group: bool


@dataclass(frozen=True, slots=True)
class Portal:
    """A customer portal from the legacy MSP portal listing."""

    portal_id: str
    zaid: str
    name: str


@dataclass(frozen=True, slots=True)
class MspCustomer:
    """A customer from `GET /api/short/msp/customers`."""

    name: str
    zaaid: str
    user_id: str


@dataclass(frozen=True, slots=True, repr=False)
class OAuthTokens:
    """Result of exchanging a grant code. `expires_in` is in seconds (at most 3600)."""

    refresh_token: str
    access_token: str
    expires_in: int

    def __repr__(self) -> str:
        return (
            f"OAuthTokens(refresh_token={mask_secret(self.refresh_token)!r}, "
            f"access_token={mask_secret(self.access_token)!r}, expires_in={self.expires_in!r})"
        )


@dataclass(frozen=True, slots=True, repr=False)
class AccessToken:
    """A minted OAuth access token. `expires_in` is in seconds (at most 3600)."""

    token: str
    expires_in: int

    def __repr__(self) -> str:
        return f"AccessToken(token={mask_secret(self.token)!r}, expires_in={self.expires_in!r})"


LEGACY_SCHEME = "Zoho-authtoken"
OAUTH_SCHEME = "Zoho-oauthtoken"


@dataclass(frozen=True, slots=True, repr=False)
class Auth:
    """How a Site24x7 API call authenticates: the `Authorization` scheme and its token.

    `Auth.legacy(authtoken)` sends `Zoho-authtoken <token>` (client-portal authtokens; the
    customer is then selected by zaid), `Auth.oauth(access_token)` sends
    `Zoho-oauthtoken <token>` (the customer is selected by zaaid). The token is masked in repr.
    """

    scheme: str
    token: str

    def __post_init__(self) -> None:
        if self.scheme not in (LEGACY_SCHEME, OAUTH_SCHEME):
            raise ValueError(f"auth scheme must be {LEGACY_SCHEME!r} or {OAUTH_SCHEME!r}")

    @classmethod
    def legacy(cls, authtoken: str) -> Auth:
        return cls(LEGACY_SCHEME, authtoken)

    @classmethod
    def oauth(cls, access_token: str) -> Auth:
        return cls(OAUTH_SCHEME, access_token)

    @property
    def generation(self) -> str:
        """ "legacy" or "oauth" (the values of `portals.models.AuthGeneration`)."""
        return "legacy" if self.scheme == LEGACY_SCHEME else "oauth"

    def __repr__(self) -> str:
        return f"Auth({self.scheme!r}, {mask_secret(self.token)!r})"
