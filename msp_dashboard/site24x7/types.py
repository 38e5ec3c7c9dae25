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
