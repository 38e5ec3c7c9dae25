"""HTTP serving: a threading keep-alive server, the request handler and ``Simulator``."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json as jsonlib
import random
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import api, control
from .faults import HANG_CAP_S
from .state import State
from .wire import ERR_INTERNAL, Request, Response, api_error


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address, state: State, latency_ms=0.0, jitter_ms=0.0, verbose=False):
        self.state = state
        self.latency_ms, self.jitter_ms, self.verbose = latency_ms, jitter_ms, verbose
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self._jitter_rng = random.Random()
        super().__init__(address, Handler)

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS look-up: skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def get_request(self):
        sock, address = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._open_lock:
            self._open.add(sock)
        self.state.accepted_connection()
        return sock, address

    def shutdown_request(self, request):
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self._open_lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def base_delay(self) -> float:
        jitter = self._jitter_rng.uniform(0, self.jitter_ms) if self.jitter_ms else 0.0
        return (self.latency_ms + jitter) / 1000.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Site24x7Simulator/1.0"
    wbufsize = 64 * 1024  # headers and body leave in one send
    timeout = 300  # idle keep-alive connections are dropped after this
    server: SimulatorServer
    conn_gen = 0  # counters generation this connection was last counted in

    def do_GET(self):
        try:
            self._dispatch()
        except ConnectionError:
            self.close_connection = True
        except Exception:  # a broken handler must still answer
            traceback.print_exc(file=sys.stderr)
            self._send(api_error(ERR_INTERNAL))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format, *args):
        if self.server.verbose:
            super().log_message(format, *args)

    def _read_request(self) -> Request:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        return Request.build(self.command, self.path, headers, body, self.client_address[0])

    def _dispatch(self) -> None:
        req = self._read_request()
        state = self.server.state
        if req.path.startswith("/_sim/"):
            self._send(control.dispatch(state, req))
            return
        endpoint = api.ROUTES.get((req.method, req.path))
        if endpoint is None:
            self._send(api.not_found())
            state.responded(404)
            return
        customer = api.identify(state, endpoint, req)
        outcome, self.conn_gen = state.begin(endpoint, customer, api.credential(req), self.conn_gen)
        delay = self.server.base_delay() + outcome.delay_s
        if delay > 0:
            time.sleep(delay)  # outside every lock
        if outcome.kind:
            response = api.fault_response(endpoint, outcome)
        else:
            response = api.HANDLERS[endpoint](state, req, customer)
        self._answer(response)

    def _answer(self, response: Response) -> None:
        state = self.server.state
        if response.action == "hang":
            state.responded(None, dropped="hang")
            self._hang(response.fault)
        elif response.action == "reset":
            state.responded(None, dropped="reset")
            self._reset()
        else:
            state.responded(response.status)
            self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _hang(self, fault) -> None:
        """Hold the connection without answering until the fault is cleared, the server
        stops or ``hang_s`` (at most 120 s) passes, then close it without a response."""
        deadline = time.monotonic() + min(getattr(fault, "hang_s", HANG_CAP_S), HANG_CAP_S)
        while not self.server.stopping.is_set() and time.monotonic() < deadline:
            if fault.released.wait(timeout=min(0.2, max(0.0, deadline - time.monotonic()))):
                break
        self.close_connection = True

    def _reset(self) -> None:
        """Abort the connection: with SO_LINGER 0 the final close sends a TCP RST. The socket
        really closes when finish() closes rfile/wfile, before any graceful shutdown."""
        self.close_connection = True
        sock = self.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class Simulator:
    """A fake Site24x7 + Zoho accounts server on one host and port.

    ``Simulator(...).start()`` serves in background threads and returns itself; ``url`` is
    the base URL of both the API and the accounts endpoints. The in-process helpers
    (``customers()``, ``set_status()``, ``add_fault()``, ...) call the same operations as
    the ``/_sim/`` HTTP surface; ``control()`` calls that surface over HTTP.
    """

    def __init__(
        self,
        customers: int = 40,
        seed: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
        jitter_ms: float = 0,
        drift_seconds: float = 0,
        verbose: bool = False,
    ):
        self.host, self.requested_port = host, port
        self.latency_ms, self.jitter_ms, self.verbose = latency_ms, jitter_ms, verbose
        self.drift_seconds = drift_seconds
        self.state = State(customers=customers, seed=seed)
        self.server: SimulatorServer | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Simulator:
        if self.server is not None:
            return self
        self._stop.clear()
        address = (self.host, self.requested_port)
        self.server = SimulatorServer(
            address, self.state, self.latency_ms, self.jitter_ms, self.verbose
        )
        serve = functools.partial(self.server.serve_forever, poll_interval=0.1)
        self._spawn(serve, "site24x7-sim-http")
        if self.drift_seconds and self.drift_seconds > 0:
            self._spawn(self._drift_loop, "site24x7-sim-drift")
        return self

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _drift_loop(self) -> None:
        while not self._stop.wait(self.drift_seconds):
            self.state.drift()

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        self._stop.set()
        # Stop listening and drop every connection first, then release the hanging requests:
        # released first, a client's immediate retry reached the closing server and was
        # answered, as if it had never been down.
        server.shutdown()
        server.server_close()
        server.close_open_connections()
        server.stopping.set()
        with self.state.lock:
            self.state.faults.clear()  # releases hanging requests
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self.server is None:
            raise RuntimeError("simulator is not running")
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- control over HTTP ----------------------------------------------------------------------

    def control(self, method: str, path: str, json: dict | None = None, timeout: float = 10):
        """Call the ``/_sim/`` surface over HTTP; returns the decoded JSON answer and raises
        ``RuntimeError`` on an HTTP status >= 400."""
        body = jsonlib.dumps(json).encode() if json is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method.upper(), path, body=body, headers=headers)
            answer = conn.getresponse()
            payload = jsonlib.loads(answer.read() or b"{}")
        finally:
            conn.close()
        if answer.status >= 400:
            raise RuntimeError(f"{method} {path} -> {answer.status}: {payload}")
        return payload

    # -- in-process helpers (same operations as /_sim/) -------------------------------------------

    def _op(self, operation, payload: dict | None = None) -> dict:
        return operation(self.state, dict(payload or {}))

    def customers(self) -> list[dict]:
        return self._op(control.customers)["customers"]

    def credentials(self) -> dict:
        return self._op(control.credentials)

    def tokens(self) -> dict:
        return self._op(control.tokens)

    def set_status(self, customer, group_id, status: int) -> dict:
        payload = {"customer": customer, "group_id": group_id, "status": status}
        return self._op(control.set_status, payload)

    def add_fault(self, kind: str, **spec) -> str:
        return self._op(control.add_fault, {"kind": kind, **spec})["id"]

    def faults(self) -> list[dict]:
        return self._op(control.list_faults)["faults"]

    def clear_faults(self, fault_id: str | None = None) -> int:
        return self._op(control.clear_faults, {"id": fault_id})["cleared"]

    def counters(self) -> dict:
        return self._op(control.counters)

    def reset_counters(self) -> None:
        self._op(control.reset_counters)

    def reset(self) -> None:
        self._op(control.reset)

    def oauth_options(self, **options) -> dict:
        return self._op(control.oauth, options)

    def drift(self, steps: int = 1) -> list[dict]:
        return self._op(control.drift, {"steps": steps})["changes"]
