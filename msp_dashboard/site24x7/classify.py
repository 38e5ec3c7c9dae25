"""Map an upstream answer (HTTP status, headers, body) to a payload or a typed error.

Three families of hosts answer differently (see docs/site24x7-wire-contract.md):
"api" (Site24x7 envelope), "portal" (legacy zohoportal accounts, `cause`) and "oauth" (Zoho
accounts, `error`). Every upstream text kept in a message is scrubbed of the request's secrets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

from .errors import (
    AuthError,
    LoginError,
    MintLimitError,
    NotFoundError,
    ResponseError,
    Site24x7Error,
    ThrottledError,
    TokenLimitError,
    TransientError,
    UnknownTokenError,
)
from .redact import scrub

AUTH_CODES = frozenset({1100, 1101, 1102})
THROTTLE_CODES = frozenset({1003})
AUTH_PHRASES = ("invalid or has expired", "invalid value passed for authtoken", "not authorized")
THROTTLE_PHRASES = ("too many requests", "too many request")
LOGIN_CAUSES = frozenset({"INVALID_PASSWORD", "NO_SUCH_USER", "INVALID_PORTAL"})
OAUTH_AUTH_ERRORS = frozenset(
    {
        "invalid_code",
        "invalid_client",
        "invalid_client_secret",
        "invalid_grant",
        "unauthorized_client",
    }
)
_NOT_JSON = object()


class Context:
    """What an error needs to know about the request that failed."""

    __slots__ = ("endpoint", "family", "http_status", "retry_after", "secrets")

    def __init__(
        self,
        *,
        endpoint: str,
        family: str,
        http_status: int | None = None,
        retry_after: float | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.endpoint = endpoint
        self.family = family
        self.http_status = http_status
        self.retry_after = retry_after
        self.secrets = tuple(secrets)

    def error(
        self, cls: type[Site24x7Error], message: str, code: int | str | None = None
    ) -> Site24x7Error:
        kwargs: dict[str, Any] = {
            "http_status": self.http_status,
            "code": code,
            "endpoint": self.endpoint,
        }
        if issubclass(cls, TransientError):
            kwargs["retry_after"] = self.retry_after
        return cls(message, **kwargs)

    def text(self, value: object) -> str:
        return scrub(value, self.secrets)


def check_response(
    status: int, headers: Mapping[str, str], content: bytes, ctx: Context
) -> dict[str, Any] | list[Any]:
    """The decoded JSON payload of a successful answer; raise the matching error otherwise."""
    ctx.http_status = status
    ctx.retry_after = parse_retry_after(headers.get("Retry-After"))
    if 300 <= status < 400:
        raise ctx.error(
            ResponseError, f"unexpected redirect (HTTP {status}); redirects are not followed"
        )
    payload = decode_json(content)
    if status == 429 or status >= 500:
        raise _transient(payload, ctx)
    if payload is _NOT_JSON:
        raise _not_json(content, ctx)
    error = FAMILIES[ctx.family](payload, ctx)
    if error is None and not 200 <= status < 300:
        error = _by_status(ctx)
    if error is not None:
        raise error
    if not isinstance(payload, (dict, list)):
        raise ctx.error(ResponseError, "response is JSON but neither an object nor a list")
    return payload


def decode_json(content: bytes) -> Any:
    """The JSON value of `content`, or the `_NOT_JSON` sentinel."""
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (delta-seconds or HTTP-date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _transient(payload: Any, ctx: Context) -> Site24x7Error:
    status = ctx.http_status
    if status == 429:
        if ctx.family == "oauth" and _is_throttle_text(_oauth_text(payload)):
            return ctx.error(
                MintLimitError, "Zoho refused to mint another access token (too many requests)"
            )
        return ctx.error(
            ThrottledError, "Site24x7 is throttling requests (HTTP 429)", _api_code(payload, ctx)
        )
    if payload is _NOT_JSON:
        return ctx.error(TransientError, f"Site24x7 server error page (HTTP {status})")
    return ctx.error(
        TransientError, f"Site24x7 server error (HTTP {status})", _api_code(payload, ctx)
    )


def _not_json(content: bytes, ctx: Context) -> Site24x7Error:
    status = ctx.http_status or 0
    if status in (401, 403, 404):
        return _by_status(ctx)
    if content[:512].lstrip().startswith(b"<"):
        return ctx.error(ResponseError, f"HTML page instead of JSON (HTTP {status})")
    if not content.strip():
        return ctx.error(ResponseError, f"empty response instead of JSON (HTTP {status})")
    return ctx.error(ResponseError, f"response is not valid JSON (HTTP {status})")


def _by_status(ctx: Context) -> Site24x7Error:
    status = ctx.http_status
    if status in (401, 403):
        return ctx.error(AuthError, f"Site24x7 refused the credentials (HTTP {status})")
    if status == 404:
        return ctx.error(NotFoundError, "endpoint not found (HTTP 404)")
    return ctx.error(ResponseError, f"unexpected HTTP status {status}")


def api_error(payload: Any, ctx: Context) -> Site24x7Error | None:
    """The error carried by a Site24x7 envelope (`error_code` or non-zero `code`), if any."""
    if not isinstance(payload, dict) or not _has_error_marker(payload):
        return None
    code = _api_code(payload, ctx)
    message = ctx.text(payload.get("message") or "no message")
    lowered = message.lower()
    shown = f"{message} (code {code})" if code is not None else message
    if code in AUTH_CODES or any(phrase in lowered for phrase in AUTH_PHRASES):
        return ctx.error(AuthError, f"Site24x7 refused the credentials: {shown}", code)
    if ctx.http_status in (401, 403):
        return ctx.error(AuthError, f"Site24x7 refused the credentials: {shown}", code)
    if code in THROTTLE_CODES or _is_throttle_text(lowered):
        return ctx.error(ThrottledError, f"Site24x7 is throttling requests: {shown}", code)
    if ctx.http_status == 404:
        return ctx.error(NotFoundError, f"not found: {shown}", code)
    return ctx.error(ResponseError, f"Site24x7 error: {shown}", code)


def _has_error_marker(payload: dict[str, Any]) -> bool:
    if payload.get("error_code") not in (None, 0, "0"):
        return True
    return "code" in payload and payload["code"] not in (None, 0, "0")


def _api_code(payload: Any, ctx: Context) -> int | str | None:
    if not isinstance(payload, dict):
        return None
    for key in ("error_code", "code"):
        value = payload.get(key)
        if value in (None, 0, "0") or isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().isdigit() and len(value) <= 12:
            return int(value)
        return ctx.text(value)[:40]
    return None


def portal_error(payload: Any, ctx: Context) -> Site24x7Error | None:
    """The error of a legacy accounts answer (`data.cause`), else any Site24x7 envelope error."""
    data = payload.get("data") if isinstance(payload, dict) else None
    cause = data.get("cause") if isinstance(data, dict) else None
    if cause is None and isinstance(payload, dict):
        cause = payload.get("cause")
    if cause is None:
        return api_error(payload, ctx)
    key = str(cause).strip().upper()
    shown = ctx.text(cause)[:60]
    return ctx.error(_CAUSES.get(key, ResponseError), _cause_message(key, shown), shown)


def _cause_message(key: str, shown: str) -> str:
    messages = {
        "INVALID_PASSWORD": "portal login refused: wrong password",
        "NO_SUCH_USER": "portal login refused: no such user",
        "INVALID_PORTAL": "portal login refused: this user does not belong to that portal",
        "EXCEEDED_MAXIMUM_ALLOWED_AUTHTOKENS": "the customer already has 10 active authtokens",
        "INVALID_AUTHTOKEN": "the authtoken is not known to Site24x7 (already deleted?)",
        "MISSING_PARAMETER": "the accounts server reported a missing parameter",
    }
    return messages.get(key, f"the accounts server refused the request ({shown})")


_CAUSES: dict[str, type[Site24x7Error]] = {
    **dict.fromkeys(LOGIN_CAUSES, LoginError),
    "EXCEEDED_MAXIMUM_ALLOWED_AUTHTOKENS": TokenLimitError,
    "INVALID_AUTHTOKEN": UnknownTokenError,
}


def oauth_error(payload: Any, ctx: Context) -> Site24x7Error | None:
    """The error of a Zoho OAuth answer (`error`, or revoke's `status: failure`)."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if error is None and str(payload.get("status", "")).lower() != "failure":
        return api_error(payload, ctx)
    key = str(error or "failure").strip()
    name = ctx.text(key)[:60]
    if _is_throttle_text(_oauth_text(payload)) or key.lower() == "access denied":
        message = "Zoho refused to mint another access token (too many requests)"
        return ctx.error(MintLimitError, message, name)
    if key == "invalid_token" and ctx.endpoint == "oauth_revoke":
        message = "the refresh token is not known to Zoho (already revoked?)"
        return ctx.error(UnknownTokenError, message, name)
    if key in OAUTH_AUTH_ERRORS or key == "invalid_token" or ctx.http_status in (401, 403):
        return ctx.error(AuthError, f"Zoho refused the OAuth credentials ({name})", name)
    return ctx.error(ResponseError, f"Zoho accounts error ({name})", name)


def _oauth_text(payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    return " ".join(
        str(payload.get(key) or "") for key in ("error", "error_description", "message")
    ).lower()


def _is_throttle_text(text: str) -> bool:
    return any(phrase in text for phrase in THROTTLE_PHRASES)


FAMILIES: dict[str, Callable[[Any, Context], Site24x7Error | None]] = {
    "api": api_error,
    "portal": portal_error,
    "oauth": oauth_error,
}
