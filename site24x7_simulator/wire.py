"""Request and response values plus the envelopes of the wire contract."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs

JSON_TYPE = "application/json;charset=UTF-8"

ERR_AUTHTOKEN = (401, 1101, "Invalid value passed for authtoken.")
ERR_OAUTH = (401, 1102, "OAuth Access Token is invalid or has expired.")
ERR_FORBIDDEN = (403, 1100, "You are not authorized to perform this operation")
ERR_THROTTLED = (429, 1003, "Too many requests. Try again after some time.")
ERR_INTERNAL = (500, 1, "Internal server error")
ERR_NOT_FOUND = (404, 404, "Resource not found")

HTML_ERROR = """<html>
<head><title>{status} {phrase}</title></head>
<body>
<center><h1>{status} {phrase}</h1></center>
<hr><center>nginx</center>
</body>
</html>
"""


def _first_values(raw: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def parse_cookies(header: str) -> dict[str, list[str]]:
    """Cookie header -> name: values (a value may hold '=', as base64 zaids do)."""
    cookies: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name:
            cookies.setdefault(name, []).append(value.strip().strip('"'))
    return cookies


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""
    client: str = ""
    form: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, method: str, target: str, headers: dict[str, str], body: bytes, client: str):
        path, _, raw_query = target.partition("?")
        path = path.rstrip("/") or "/"
        req = cls(method, path, _first_values(raw_query), headers, body, client)
        content_type = headers.get("content-type", "")
        if "application/x-www-form-urlencoded" in content_type or (body and not content_type):
            req.form = _first_values(body.decode("utf-8", "replace"))
        req.cookies = parse_cookies(headers.get("cookie", ""))
        return req

    def param(self, name: str) -> str | None:
        """A parameter from the form body, else the query string."""
        value = self.form.get(name)
        return value if value is not None else self.query.get(name)

    def authorization(self) -> tuple[str, str]:
        """('zoho-authtoken' | 'zoho-oauthtoken' | ..., token) from the Authorization header."""
        scheme, _, token = self.headers.get("authorization", "").strip().partition(" ")
        return scheme.lower(), token.strip()

    def json(self) -> dict:
        if not self.body.strip():
            return {}
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise ValueError("a JSON object is expected")
        return value


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    action: str | None = None  # "hang" | "reset": no HTTP answer at all
    fault: object = None  # the fault behind a hang, whose release ends it

    def cookie(self, name: str, value: str) -> Response:
        self.headers.append(("Set-Cookie", f"{name}={value}; Path=/"))
        return self


def json_response(status: int, payload) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status=status, body=body)


def api_ok(data) -> Response:
    return json_response(200, {"code": 0, "message": "success", "data": data})


def api_error(error: tuple[int, int, str]) -> Response:
    status, code, message = error
    return json_response(status, {"error_code": code, "message": message})


def legacy_ok(data: dict) -> Response:
    return json_response(200, {"t": "json", "data": data})


def legacy_fail(cause: str) -> Response:
    return json_response(400, {"t": "json", "data": {"response": False, "cause": cause}})


def throttled(retry_after: int) -> Response:
    response = api_error(ERR_THROTTLED)
    response.headers.append(("Retry-After", str(max(1, int(retry_after)))))
    return response


def html_error(status: int) -> Response:
    phrase = _phrase(status)
    body = HTML_ERROR.format(status=status, phrase=phrase).encode()
    return Response(status=status, body=body, content_type="text/html")


def generic_error(status: int) -> Response:
    return api_error((status, status, _phrase(status)))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
