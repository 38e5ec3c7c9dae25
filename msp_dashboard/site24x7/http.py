"""HTTP transport: per-thread sessions, no cookie jar, host allow-list, timeouts, typed errors.

Security rules kept here (docs/site24x7-wire-contract.md, quality checks SEC-09/11, REL-04):
- every request has connect and read timeouts and never follows a redirect;
- no cookie carries over: the session jar rejects every cookie, `Cookie` is set per request;
- only origins on the allow-list are contacted, checked before each request;
- secrets travel in headers or form bodies only; log lines hold method, host, path, status
  and duration, never a header, a body or a query string;
- request errors keep only the exception class name and never chain (no `__context__`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from .classify import Context, check_response
from .errors import ConfigurationError, Site24x7Error, TransientError
from .headers import install as install_header_parser

install_header_parser()  # http.client's, cheap for plain header blocks (headers.py)
logger = logging.getLogger("msp_dashboard.site24x7")

POOL_SIZE = 32
DEFAULT_PORTS = {"http": 80, "https": 443}
Timeout = tuple[float, float]


@dataclass(frozen=True, slots=True, repr=False)
class RawAnswer:
    """An upstream answer as received. The body may hold secrets: never print or log it."""

    status: int
    headers: Mapping[str, str]  # case-insensitive (requests' CaseInsensitiveDict)
    content: bytes

    def __repr__(self) -> str:
        return f"RawAnswer(status={self.status}, {len(self.content)} bytes)"


class RejectAllCookies(DefaultCookiePolicy):
    """A cookie policy that neither stores nor sends any cookie."""

    def __init__(self) -> None:
        super().__init__(allowed_domains=[])

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute http(s) URL; ConfigurationError otherwise."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
        scheme = ""
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        raise ConfigurationError("not an absolute http(s) URL without credentials")
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def check_timeout(timeout: Timeout) -> Timeout:
    """(connect, read) seconds, both finite and positive: a request must never wait forever."""
    valid = (
        isinstance(timeout, tuple)
        and len(timeout) == 2
        and all(isinstance(t, (int, float)) and 0 < t < float("inf") for t in timeout)
    )
    if not valid:
        raise ConfigurationError("timeout must be (connect seconds, read seconds), both > 0")
    return (float(timeout[0]), float(timeout[1]))


class Transport:
    """Sends requests for one client. Thread-safe: one `requests.Session` per thread."""

    def __init__(self, *, allowed_urls: Iterable[str], timeout: Timeout, user_agent: str) -> None:
        self.allowed_origins = frozenset(origin_of(url) for url in allowed_urls)
        self.timeout = check_timeout(timeout)
        self.user_agent = user_agent
        self._local = threading.local()
        # Weak: a session dies with its thread (a pool may come and go), close() gets the rest.
        self._sessions: weakref.WeakSet[requests.Session] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._environment: dict[tuple[str, str, int], tuple[dict[str, str], bool | str]] = {}

    def session(self) -> requests.Session:
        """This thread's session, created on first use."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._new_session()
            self._local.session = session
            with self._lock:
                self._sessions.add(session)
        return session

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # read once per origin instead (`environment`)
        session.cookies.set_policy(RejectAllCookies())
        adapter = PooledAdapter(pool_connections=8, pool_maxsize=POOL_SIZE, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def close(self) -> None:
        """Close every session this transport created (in any thread)."""
        with self._lock:
            sessions, self._sessions = list(self._sessions), weakref.WeakSet()
        for session in sessions:
            session.close()
        self._local = threading.local()

    def environment(self, url: str) -> tuple[dict[str, str], bool | str]:
        """(proxies, verify) for `url` as the environment sets them (HTTPS_PROXY, NO_PROXY,
        REQUESTS_CA_BUNDLE...), read once per origin: requests otherwise reads the whole
        environment again on every request (3 % of a refresh's CPU in a worker)."""
        origin = origin_of(url)
        found = self._environment.get(origin)
        if found is None:  # requests' own reading, on a session that still trusts the env
            merged = requests.Session().merge_environment_settings(url, {}, False, True, None)
            found = self._environment[origin] = (merged["proxies"], merged["verify"])
        return found

    def check_url(self, url: str) -> None:
        """Raise ConfigurationError unless `url` points at an allowed origin."""
        if origin_of(url) not in self.allowed_origins:
            raise ConfigurationError("refusing to contact a host outside the Site24x7 allow-list")

    def request(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        family: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        cookie: str | None = None,
        secrets: Sequence[str] = (),
    ) -> tuple[int, dict[str, Any] | list[Any]]:
        """Send one request; (HTTP status, decoded JSON) of a success, else a `Site24x7Error`."""
        answer = self.send_raw(
            method, url, endpoint=endpoint, headers=headers, params=params, form=form, cookie=cookie
        )
        ctx = Context(endpoint=endpoint, family=family, secrets=secrets)
        return answer.status, check_response(answer.status, answer.headers, answer.content, ctx)

    def send_raw(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        cookie: str | None = None,
    ) -> RawAnswer:
        """Send one request and hand back the answer unjudged (status, headers, body).

        For diagnostics (`probe`): the body may hold secrets, so never print or log it. A
        request that gets no answer raises the same `TransientError`/`Site24x7Error` as
        `request`."""
        self.check_url(url)
        all_headers = {"User-Agent": self.user_agent, **(headers or {})}
        if cookie is not None:
            all_headers["Cookie"] = cookie
        where = _where(url)
        started = time.monotonic()
        response, failure = self._send(method, url, all_headers, params, form)
        elapsed_ms = (time.monotonic() - started) * 1000
        if response is None:
            logger.debug("%s %s failed (%s) after %.0f ms", method, where, failure[1], elapsed_ms)
            raise _request_failure(*failure, endpoint=endpoint)
        status = response.status_code
        logger.debug("%s %s -> %s in %.0f ms", method, where, status, elapsed_ms)
        self.session().cookies.clear()  # belt and braces: the policy already refuses them
        return RawAnswer(status=status, headers=response.headers, content=response.content)

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        form: Mapping[str, str] | None,
    ) -> tuple[requests.Response | None, tuple[str, str]]:
        """The response, or None and (kind, exception class name). Never raises requests errors.

        The request goes straight to the session's adapter (its connection pool), prepared here:
        `Session.request` would merge the session's cookies, auth, hooks and environment into
        every request and dispatch hooks after it, none of which applies (no cookie jar, no
        auth, no redirects, the environment read once per origin), and that machinery was a
        third of the client's CPU per call."""
        proxies, verify = self.environment(url)
        try:
            prepared = _prepared(method, url, headers, params, form)
            adapter = self.session().get_adapter(prepared.url)
            response = adapter.send(
                prepared, stream=False, timeout=self.timeout, verify=verify, cert=None,
                proxies=proxies,
            )  # fmt: skip
            _ = response.content  # the whole body, inside the try: a broken one fails here
        except requests.RequestException as exc:
            return None, (_failure_kind(exc), type(exc).__name__)
        return response, ("", "")


@functools.lru_cache(maxsize=4096)
def _full_url(url: str, params: tuple[tuple[str, str], ...]) -> str:
    """The URL as requests sends it (checked, quoted, parameters appended), once per URL and
    parameters: a customer's status URL is the same every round, and requests' parsing and
    quoting of it was 3 % of a worker's CPU. Parameters never carry a secret (see above)."""
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, dict(params) if params else None)
    return prepared.url


class PooledAdapter(HTTPAdapter):
    """requests' adapter, keeping the connection pool of each origin (and TLS settings) at hand
    when no proxy applies: requests otherwise parses the URL twice and builds a pool key for
    every request (4 % of a worker's CPU). urllib3's pool manager never closes a pool it
    hands out (it drops the least recently used beyond `pool_connections`); closing the
    adapter closes the pools kept here."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pools: dict[tuple, Any] = {}

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        if proxies:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        key = (request.url.split("/", 3)[2], request.url.split(":", 1)[0], verify, cert)
        pool = self._pools.get(key)
        if pool is None:
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            self._pools[key] = pool
        return pool

    def build_response(self, req, resp) -> requests.Response:
        """requests' own, without copying the answer's Set-Cookie headers into the response's
        cookie jar: no one reads it (our sessions refuse cookies; a login's cookie is passed
        by hand), and the jar with its mock request and response was 3 % of a worker's CPU
        per call. requests skips that copy for a urllib3 response without its http.client
        response, so the latter is hidden for the call."""
        original = getattr(resp, "_original_response", None)
        if original is None:
            return super().build_response(req, resp)
        resp._original_response = None
        try:
            return super().build_response(req, resp)
        finally:
            resp._original_response = original

    def close(self) -> None:
        super().close()
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


_SESSION_HEADERS = requests.utils.default_headers()
"""The headers a `requests.Session` adds to each request (Accept, Accept-Encoding, Connection;
its User-Agent is replaced by ours), kept so the wire looks as before."""


def _prepared(method, url, headers, params, form) -> requests.PreparedRequest:
    """A request as `Session.prepare_request` would build it for our sessions: the session's
    default headers under the request's, no cookies, no auth, no hooks."""
    prepared = requests.PreparedRequest()
    prepared.prepare_method(method)
    prepared.url = _full_url(url, tuple(params.items()) if params else ())
    merged = requests.structures.CaseInsensitiveDict(_SESSION_HEADERS)
    merged.update(headers)
    prepared.prepare_headers(merged)
    prepared.prepare_body(data=form, files=None)
    prepared.prepare_hooks({})
    return prepared


def _failure_kind(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return "tls"  # a certificate failure does not heal by retrying: not transient
    if isinstance(exc, requests.Timeout):
        return "timeout"
    if exc.args and isinstance(exc.args[0], urllib3.exceptions.ReadTimeoutError):
        return "timeout"
    transient = (
        requests.ConnectionError,
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
    )
    return "connection" if isinstance(exc, transient) else "other"


def _request_failure(kind: str, exc_name: str, *, endpoint: str) -> Site24x7Error:
    if kind == "timeout":
        return TransientError(f"Site24x7 did not answer in time ({exc_name})", endpoint=endpoint)
    if kind == "connection":
        return TransientError(f"could not talk to Site24x7 ({exc_name})", endpoint=endpoint)
    if kind == "tls":
        return Site24x7Error(
            f"TLS handshake or certificate check failed ({exc_name})", endpoint=endpoint
        )
    return Site24x7Error(f"request to Site24x7 failed ({exc_name})", endpoint=endpoint)


def _where(url: str) -> str:
    """host[:port]/path of `url`, without query string or credentials, for log lines."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{host}{parts.path}"
