"""Typed errors of the Site24x7 client.

Messages are short and human and never hold a secret. The constructor takes the message as
its only positional argument, so `args == (message,)`; the rest is keyword-only attributes.
"""

from __future__ import annotations


class Site24x7Error(Exception):
    """Base class of every error raised by the client."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.endpoint = endpoint

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        extras = "".join(
            f", {name}={value!r}" for name, value in self._repr_fields() if value is not None
        )
        return f"{type(self).__name__}({self.message!r}{extras})"

    def _repr_fields(self) -> list[tuple[str, object]]:
        return [("http_status", self.http_status), ("code", self.code), ("endpoint", self.endpoint)]


class ConfigurationError(Site24x7Error, ValueError):
    """The client was asked to do something its configuration does not allow (e.g. a host)."""


class TransientError(Site24x7Error):
    """Worth retrying later: timeouts, connection errors, 5xx. `retry_after` in seconds."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        http_status: int | None = None,
        code: int | str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, code=code, endpoint=endpoint)
        self.retry_after = retry_after

    def _repr_fields(self) -> list[tuple[str, object]]:
        return [*super()._repr_fields(), ("retry_after", self.retry_after)]


class ThrottledError(TransientError):
    """HTTP 429 or an explicit "too many requests" answer."""


class MintLimitError(ThrottledError):
    """Zoho refused to mint another access token (10 per refresh token per 10 minutes)."""


class AuthError(Site24x7Error):
    """The token or client credentials are invalid, expired, revoked or not allowed here."""


class ResponseError(Site24x7Error):
    """The upstream answer is not what the contract promises (shape, JSON, non-zero code)."""


class TokenLimitError(Site24x7Error):
    """The customer account already has the maximum of 10 active authtokens."""


class LoginError(Site24x7Error):
    """Portal login refused: wrong password, unknown user or wrong portal.

    This is about the email/password/portal typed in, not about a stored token being invalid.
    """


class UnknownTokenError(Site24x7Error):
    """Delete/revoke of a token the server does not know (already deleted or never existed)."""


class NotFoundError(Site24x7Error):
    """HTTP 404: the endpoint (or resource) does not exist on this host."""
