"""SEC-09 for the client: canary secrets never reach a log record, an exception or a repr.

Every method runs its success path and every failure path, through `responses` and over real
HTTP (a loopback server that echoes the request, secrets included, back in its error bodies),
with all logging captured at DEBUG (root, urllib3, requests, msp_dashboard).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, quote_plus

import pytest
import requests
import responses

from msp_dashboard.site24x7 import Site24x7Client, Site24x7Error

API = "https://www.site24x7.com"
ZOHO = "https://accounts.zoho.com"
PORTAL = "https://accounts.zohoportal.com"


def canary() -> str:
    return f"CANARY-{uuid.uuid4()}"


SECRETS = {
    name: canary()
    for name in (
        "msp_authtoken",
        "authtoken",
        "password",
        "client_secret",
        "refresh_token",
        "access_token",
        "code",
        "new_token",
        "new_access",
        "new_refresh",
    )
}


def forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
    }


ALL_FORMS = {form for secret in SECRETS.values() for form in forms(secret)}

CALLS: dict[str, Callable[[Site24x7Client], object]] = {
    "portals": lambda c: c.list_portals(msp_authtoken=SECRETS["msp_authtoken"]),
    "authtoken_create": lambda c: c.create_portal_authtoken(
        portal_id="123", email="a@b.example", password=SECRETS["password"]
    ),
    "authtoken_delete": lambda c: c.delete_portal_authtoken(
        portal_id="123", authtoken=SECRETS["authtoken"]
    ),
    "monitor_groups_status": lambda c: c.monitor_groups_status(
        authtoken=SECRETS["authtoken"], zaid="ABCD=="
    ),
    "monitor_groups_status_cookie": lambda c: c.monitor_groups_status(
        authtoken=SECRETS["authtoken"], zaid="ABCD==", zaid_via="cookie"
    ),
    "oauth_exchange": lambda c: c.exchange_grant_code(
        client_id="1000.ID", client_secret=SECRETS["client_secret"], code=SECRETS["code"]
    ),
    "oauth_mint": lambda c: c.mint_access_token(
        client_id="1000.ID",
        client_secret=SECRETS["client_secret"],
        refresh_token=SECRETS["refresh_token"],
    ),
    "oauth_revoke": lambda c: c.revoke_refresh_token(refresh_token=SECRETS["refresh_token"]),
    "short_customers": lambda c: c.list_msp_customers(access_token=SECRETS["access_token"]),
    "current_status": lambda c: c.current_status(access_token=SECRETS["access_token"], zaaid="42"),
    "msp_monitors_status": lambda c: c.msp_monitors_status(access_token=SECRETS["access_token"]),
}
PATHS = {
    "/api/msp/customers/portals": {"code": 0, "data": [{"portal_id": 1, "zaid": "Z", "name": "A"}]},
    "/accounts/client/authtoken": {"t": "json", "data": {"token": SECRETS["new_token"]}},
    "/accounts/client/authtoken/delete": {"t": "json", "data": {"response": True}},
    "/api/monitor_groups/status": {
        "code": 0,
        "data": [{"group_id": "1", "group_name": "g", "status": 1, "monitors": 1}],
    },
    "/oauth/v2/token": {
        "access_token": SECRETS["new_access"],
        "refresh_token": SECRETS["new_refresh"],
        "expires_in": 3600000,
    },
    "/oauth/v2/token/revoke": {"status": "success"},
    "/api/short/msp/customers": {"code": 0, "data": [{"name": "A", "zaaid": "42", "user_id": "7"}]},
    "/api/current_status": {"code": 0, "data": {"monitor_groups": []}},
    "/api/msp/customers/monitors/status": {"code": 0, "data": []},
}


class Findings:
    """Everything observable that must stay canary-free."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.errors: list[Site24x7Error] = []
        self.results: list[object] = []

    def run(self, call: Callable[[Site24x7Client], object], client: Site24x7Client) -> None:
        try:
            self.results.append(call(client))
        except Site24x7Error as exc:
            self.errors.append(exc)

    def check(self, caplog: pytest.LogCaptureFixture) -> None:
        texts = [caplog.text]
        for record in caplog.records:
            texts += [
                record.getMessage(),
                str(record.msg),
                repr(record.args),
                record.exc_text or "",
            ]
        for exc in self.errors:
            assert exc.__cause__ is None and exc.__context__ is None
            texts += [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
        for result in self.results:
            if not isinstance(result, str):  # a created authtoken is handed back as is
                texts += [repr(result), str(result)]
        assert not [form for form in ALL_FORMS for text in texts if form in text]


@pytest.fixture
def debug_logs(caplog):
    for name in (None, "urllib3", "requests", "msp_dashboard", "msp_dashboard.site24x7"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def echo_text(request) -> str:
    body = request.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    auth = request.headers.get("Authorization", "")
    # Secrets first: messages are cut at 200 characters, and the echo must survive the cut.
    return f"{auth} {body} {request.method} {request.url} {json.dumps(dict(request.headers))}"


def failing_answers(request) -> Iterator[tuple[int, dict[str, str], str]]:
    """Every failure answer, each echoing the full request (secrets included) where it can."""
    echo = echo_text(request)
    yield 401, {}, json.dumps({"error_code": 1101, "message": f"Invalid authtoken {echo}"})
    yield 403, {}, json.dumps({"error_code": 1100, "message": echo})
    yield 429, {"Retry-After": "7"}, json.dumps({"error_code": 1003, "message": echo})
    yield 500, {}, json.dumps({"error_code": 1, "message": echo})
    yield 502, {}, f"<html><body>{echo}</body></html>"
    yield 200, {}, f"<html>{echo}</html>"
    yield 200, {}, json.dumps({"code": 0, "data": [{"echo": echo}]})[:-5]
    yield 200, {}, json.dumps({"code": echo, "message": echo})
    yield 200, {}, json.dumps({"code": 0, "data": echo})
    yield 400, {}, json.dumps({"t": "json", "data": {"response": False, "cause": echo}})
    yield 400, {}, json.dumps({"error": echo, "error_description": echo})
    yield 400, {}, json.dumps({"error": "invalid_code", "error_description": echo})
    yield 400, {}, json.dumps({"status": "failure", "error": echo})
    yield 404, {}, echo
    yield 302, {"Location": f"https://elsewhere.example/?{quote(echo)}"}, ""


EXCEPTIONS = [
    requests.exceptions.ReadTimeout(f"timed out {SECRETS['access_token']}"),
    requests.exceptions.ConnectionError(f"reset {SECRETS['password']}"),
    requests.exceptions.ChunkedEncodingError(f"bad {SECRETS['client_secret']}"),
    requests.exceptions.InvalidHeader(f"Invalid header {SECRETS['authtoken']}"),
]


def register_all(rsps: responses.RequestsMock, callback) -> None:
    for path in PATHS:
        host = API if path.startswith("/api") else (PORTAL if "client" in path else ZOHO)
        rsps.add_callback(responses.GET, host + path, callback=callback)
        rsps.add_callback(responses.POST, host + path, callback=callback)


def test_canary_never_leaks_through_mocked_http(debug_logs):
    findings = Findings()
    client = Site24x7Client("US")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        state = {"index": 0}

        def answer(request):
            path = request.path_url.split("?")[0]
            if state["index"] < 0:
                return 200, {}, json.dumps(PATHS[path])
            answers = list(failing_answers(request))
            return answers[state["index"] % len(answers)]

        register_all(rsps, answer)
        state["index"] = -1
        for call in CALLS.values():
            findings.run(call, client)
        answers_count = len(list(failing_answers(requests.Request("GET", API).prepare())))
        for index in range(answers_count):
            state["index"] = index
            for call in CALLS.values():
                findings.run(call, client)
    for exc in EXCEPTIONS:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            for path in PATHS:
                for host in (API, ZOHO, PORTAL):
                    rsps.add(responses.GET, host + path, body=exc)
                    rsps.add(responses.POST, host + path, body=exc)
            for call in CALLS.values():
                findings.run(call, client)
    assert len(findings.results) == len(CALLS)
    assert len(findings.errors) == len(CALLS) * (answers_count + len(EXCEPTIONS))
    findings.check(debug_logs)


# --- the same over real HTTP (real urllib3 DEBUG logging) ----------------------------------------


class EchoHandler(BaseHTTPRequestHandler):
    """Answers like Site24x7 would (server.mode), echoing the request in error bodies."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        path = self.path.split("?")[0]
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "hang":
            time.sleep(0.6)  # longer than the client's read timeout
        if mode in ("ok", "hang"):
            status, headers, text = 200, {"Set-Cookie": "zaaid=42"}, json.dumps(PATHS[path])
        else:
            echo = _Echo(self.command, self.path, dict(self.headers), body)
            status, headers, text = list(failing_answers(echo))[int(mode)]
        self._send(status, headers, text)

    def _send(self, status: int, headers: dict[str, str], text: str) -> None:
        data = text.encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:  # the client gave up (hang mode)
            self.close_connection = True


class _Echo:
    def __init__(self, method: str, url: str, headers: dict[str, str], body: str) -> None:
        self.method, self.url, self.headers, self.body = method, url, headers, body


@pytest.fixture
def echo_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server.daemon_threads = True
    server.mode = "ok"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_canary_never_leaks_over_real_http(debug_logs, echo_server):
    url = f"http://127.0.0.1:{echo_server.server_address[1]}"
    client = Site24x7Client("US", api_url=url, accounts_url=url, timeout=(1.0, 0.3))
    findings = Findings()
    answers_count = len(list(failing_answers(_Echo("GET", "/", {}, ""))))
    for mode in ["ok", *map(str, range(answers_count))]:
        echo_server.mode = mode
        for call in CALLS.values():
            findings.run(call, client)
    echo_server.mode = "hang"
    for name in ("authtoken_create", "oauth_mint", "current_status"):
        findings.run(CALLS[name], client)
    client.close()
    assert len(findings.results) == len(CALLS)
    assert len(findings.errors) == len(CALLS) * answers_count + 3
    assert any("urllib3" in record.name for record in debug_logs.records)
    findings.check(debug_logs)
