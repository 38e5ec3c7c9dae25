"""Helpers for the alerts tests: a real HTTP listener on loopback that records what it gets
and answers as told, Celery run eagerly (deliveries and their retries in the test's thread),
customers stored through the real refresh services, and alert channels made through the
alerts' services (webhook URLs sealed as in production)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.utils import timezone

from msp_dashboard.site24x7 import GroupStatus, Status


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Listener:
    """An http.server on 127.0.0.1: records every POST; answers the queued statuses in turn,
    then 200."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def hook(self, token: str = "T000/B000/XXXXXXXXXXXXXXXXXXXXSECRET") -> str:
        """A Slack-like webhook URL whose path is the secret."""
        return f"{self.url}/services/{token}"

    def answer(self, *statuses: int) -> None:
        with self.lock:
            self.answers.extend(statuses)


def _handler(listener_ref: list):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            listener = listener_ref[0]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with listener.lock:
                listener.received.append(Received(self.path, dict(self.headers), body))
                status = listener.answers.pop(0) if listener.answers else 200
            payload = b"ok" if status < 400 else b"upstream trouble"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def listener():
    ref: list = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref))
    ref.append(Listener(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ref[0]
    server.shutdown()
    server.server_close()


@pytest.fixture
def own_cache(settings, tmp_path):
    """A file cache of this test's own (without Redis): var/cache is shared with every other
    test run and the demo on this machine, whose entries (the alerts' cached channels and
    snapshot) would otherwise mix with this test's."""
    from tests.refresh_support import isolate_file_cache

    isolate_file_cache(settings, tmp_path)


@pytest.fixture
def eager(settings):
    """Celery tasks run in this thread as they are published (retries too, at once)."""
    from msp_dashboard.celery import app

    before = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, False
    settings.ALERT_RETRY_BASE = 0.01
    yield app
    app.conf.task_always_eager, app.conf.task_eager_propagates = before


def channel(kind: str = "webhook", *, url: str = "", name: str = "", groups=None, **fields):
    from alerts.models import AlertChannel
    from alerts.services import CHANNELS_VERSION, _bump, channel_save

    obj = AlertChannel(name=name or f"{kind} channel", kind=kind, **fields)
    saved = channel_save(channel=obj, url=url or None, groups=groups)
    _bump(CHANNELS_VERSION)  # what the commit would do (the test's transaction never commits)
    return saved


def groups(*pairs: tuple[str, Status], monitors: int = 4) -> list[GroupStatus]:
    """[GroupStatus] from (name, status); group ids are the names, all top groups."""
    return [
        GroupStatus(name, name, status, monitors, 0 if status == Status.UP else 1, True)
        for name, status in pairs
    ]


class Clock:
    """A frozen clock moved by hand; each `store` is one successful refresh at that time."""

    def __init__(self, start: datetime | None = None):
        self.now = start or timezone.now().replace(microsecond=0)

    @contextmanager
    def at(self):
        with time_machine.travel(self.now, tick=False):
            yield self.now

    def tick(self, seconds: float = 300) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def store(clock: Clock, customer, pairs, *, capture, advance: float = 300) -> None:
    """One successful refresh of `customer` reporting `pairs`, `advance` seconds after the
    last, through the real service (its on-commit signal runs the alert engine)."""
    from portals.services import customer_store_groups

    clock.tick(advance)
    with clock.at() as now, capture(execute=True):
        assert customer_store_groups(customer_id=customer.pk, groups=groups(*pairs), started=now)
