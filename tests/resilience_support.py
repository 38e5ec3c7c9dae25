"""Process helpers for the resilience tests and the soak (benchmarks/soak.py): a private
redis-server, Celery worker and beat subprocesses and a gunicorn web server, each with its
output captured to a file, so a test can kill and restart any of them.

A `Stack` is what those processes share: one database (the test's own, passed as DATABASE_URL),
one broker and cache (a private Redis, or the filesystem broker and file cache under a private
VAR_DIR), the simulator, the keys of this process and a few settings (short intervals). Its
`broker_for(app)` points this process's Celery app at the same broker for a while, so a test
can publish a task or a round itself."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Settings a subprocess must not inherit from this process's environment.
_OWN_ENV = (
    "DATABASE_URL", "REDIS_URL", "VAR_DIR", "DEMO", "DEBUG", "SITE24X7_API_URL",
    "SITE24X7_ACCOUNTS_URL", "CACHE_KEY_PREFIX", "LOG_LEVEL",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], object], *, timeout: float = 20.0, interval: float = 0.05, what=""
) -> float:
    """Poll until `predicate()` is true; the seconds it took. AssertionError after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - start
        time.sleep(interval)
    if predicate():
        return time.monotonic() - start
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")


def rss_kb(pid: int) -> int:
    """Resident memory of one process, from /proc (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


class Proc:
    """One subprocess in a session of its own, stdout and stderr appended to `log_path`."""

    def __init__(self, name: str, argv: list[str], *, env: dict, log_path: Path) -> None:
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen else 0

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL to the process's own group (gunicorn's workers too), then reap it."""
        self._signal(signal.SIGKILL)
        if self.popen:
            self.popen.wait(10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL if it has not ended within `timeout`."""
        if not self.alive:
            return
        self._signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def pause(self) -> None:
        """SIGSTOP: the process stays, does nothing, answers nothing (a stopped worker)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signum)  # the group this Popen created, by its id

    def log(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(since)
                return handle.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        """The log's current length: pass it to `log()` / `wait_for_log()` as `since`."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def wait_for_log(self, text: str, *, since: int = 0, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(since):
            if not self.alive or time.monotonic() > deadline:
                state = "exited" if not self.alive else "still running"
                raise AssertionError(
                    f"{self.name} ({state}) did not log {text!r}:\n{self.log(since)[-4000:]}"
                )
            time.sleep(0.05)

    def rss_kb(self) -> int:
        return rss_kb(self.pid) if self.alive else 0


class RedisServer:
    """A private `redis-server` on a free port, no persistence: a restart starts it empty,
    as a Redis without a disk would come back."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: Proc | None = None
        self.starts = 0

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [
            shutil.which("redis-server") or "redis-server", "--port", str(self.port),
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", str(self.folder), "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        self.starts += 1
        self.proc = Proc("redis", argv, env=dict(os.environ), log_path=self.folder / "redis.log")
        self.proc.start()
        wait_until(self.ping, timeout=15, what=f"redis-server on port {self.port}")
        return self

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for a subprocess from a Django connection's settings (the test database
    inside a test: `connection.settings_dict`)."""
    name = str(settings_dict["NAME"])
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(name).resolve()}"
    user = quote(settings_dict.get("USER") or "", safe="")
    password = settings_dict.get("PASSWORD") or ""
    auth = user + (f":{quote(password, safe='')}" if password else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{quote(name, safe='')}"


class Stack:
    """The environment every subprocess of one test (or of the soak) shares; starts them."""

    def __init__(
        self,
        folder: Path,
        *,
        database_url: str,
        sim_url: str,
        redis_url: str = "",
        secret_key: str,
        encryption_keys: list[str],
        var_dir: Path | None = None,
        **settings: object,
    ) -> None:
        self.folder = folder
        self.var_dir = var_dir or folder / "var"
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.database_url, self.redis_url, self.sim_url = database_url, redis_url, sim_url
        self.secret_key, self.encryption_keys = secret_key, encryption_keys
        self.settings = {key: str(value) for key, value in settings.items()}
        self.procs: list[Proc] = []

    # --- the environment ------------------------------------------------------------------

    def env(self, **extra: object) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _OWN_ENV}
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE="msp_dashboard.settings",
            SECRET_KEY=self.secret_key,
            FIELD_ENCRYPTION_KEYS=",".join(self.encryption_keys),
            VAR_DIR=str(self.var_dir),
            DATABASE_URL=self.database_url,
            SITE24X7_API_URL=self.sim_url,
            SITE24X7_ACCOUNTS_URL=self.sim_url,
            SYNC_INTERVAL="86400",  # no customer sync in the middle of a count
        )
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        env.update(self.settings)
        env.update({key: str(value) for key, value in extra.items()})
        return env

    def _proc(self, name: str, argv: list[str], **extra: object) -> Proc:
        index = sum(1 for p in self.procs if p.name == name)
        log = self.folder / "logs" / f"{name}-{index}.log"
        proc = Proc(name, argv, env=self.env(**extra), log_path=log)
        self.procs.append(proc)
        return proc.start()

    # --- the processes --------------------------------------------------------------------

    def worker(
        self, name: str = "worker", *, concurrency: int = 4, loglevel: str = "INFO", wait=True
    ) -> Proc:
        argv = [
            str(BIN / "celery"), "-A", "msp_dashboard", "worker", "--pool", "threads",
            "--concurrency", str(concurrency), "--loglevel", loglevel, "--without-gossip",
            "--without-mingle", "--without-heartbeat", "-n", f"{name}-{free_port()}@%h",
        ]  # fmt: skip
        proc = self._proc(name, argv, LOG_LEVEL=loglevel)
        if wait:
            proc.wait_for_log(" ready.", timeout=60)
        return proc

    def beat(self, name: str = "beat", *, schedule: Path | None = None, loglevel="INFO") -> Proc:
        schedule = schedule or self.var_dir / f"{name}-schedule"
        argv = [
            str(BIN / "celery"), "-A", "msp_dashboard", "beat", "--loglevel", loglevel,
            "--schedule", str(schedule), "--max-interval", "1",
        ]  # fmt: skip
        proc = self._proc(name, argv, LOG_LEVEL=loglevel)
        proc.wait_for_log("beat: Starting", timeout=60)
        return proc

    def web(self, port: int | None = None) -> tuple[Proc, str]:
        """gunicorn (one sync worker: one process, one persistent database connection), as in
        production; returns the process and its base URL once it answers."""
        import requests

        port = port or free_port()
        argv = [
            str(BIN / "gunicorn"), "msp_dashboard.wsgi:application", "--bind",
            f"127.0.0.1:{port}", "--workers", "1", "--timeout", "30",
        ]  # fmt: skip
        proc = self._proc("web", argv)
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            return requests.get(f"{url}/login/", timeout=2).status_code == 200

        wait_until(answers, timeout=60, what="gunicorn to answer")
        return proc, url

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.kill()

    def logs(self, name: str | None = None) -> str:
        return "\n".join(p.log() for p in self.procs if name in (None, p.name))

    # --- this process on the same broker and cache ----------------------------------------

    def caches(self) -> dict:
        """A CACHES setting for this process that is the subprocesses' cache."""
        if self.redis_url:
            return {
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": self.redis_url,
                    "KEY_PREFIX": "msp",
                    "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
                }
            }
        return {
            "default": {
                "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": str(self.var_dir / "cache"),
            }
        }

    def broker_options(self) -> tuple[str, str | None, dict]:
        if self.redis_url:
            options = {"socket_connect_timeout": 2, "socket_timeout": 5, "retry_on_timeout": True}
            return self.redis_url, "msp_dashboard.celery:RedisTransport", options
        return filesystem_broker(self.var_dir / "broker")

    def broker_for(self, app):
        """Point this process's Celery app at the stack's broker, and back afterwards."""
        return broker_at(app, *self.broker_options())


def _use_broker(app, url: str, transport: str | None, options: dict) -> None:
    import kombu.pools

    app.conf.broker_url = url
    app.conf.broker_transport = transport
    app.conf.broker_transport_options = options
    app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()


@contextlib.contextmanager
def broker_at(app, url: str, transport: str | None = None, options: dict | None = None):
    """Point this process's Celery app at another broker for a while (a dead one, a folder)."""
    conf = app.conf
    saved = (conf.broker_url, conf.broker_transport, conf.broker_transport_options)
    _use_broker(app, url, transport, options or {})
    try:
        yield
    finally:
        _use_broker(app, *saved)


def filesystem_broker(folder: Path) -> tuple[str, str, dict]:
    """(url, transport, options) of the filesystem broker in `folder`."""
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }
    return "filesystem://", "msp_dashboard.celery:FilesystemTransport", options
