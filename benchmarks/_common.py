"""Shared helpers for the benchmarks: an isolated environment (its own PostgreSQL database,
Redis database and var/ folder, so a benchmark never touches the tests' data or a running demo),
the simulator and the Celery worker as real subprocesses, customers with real credentials, and
the figures (RSS, simulator counters, the closing JSON line).

Call `configure()` before anything imports Django: it sets the environment that both this
process and the worker subprocess read."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH_VAR = ROOT / "var" / "bench"
BENCH_DATABASE = "msp_bench"
BENCH_REDIS_DB = 15  # the tests and the demo use db 0
MEMORY = {"database": "msp_bench_memory", "redis_db": 13, "var": ROOT / "var" / "bench-memory"}
"""worker_memory.py's own database, Redis db and folder, so it can run beside refresh_cycle."""
OWNER_KEY = "msp-dashboard-benchmark"
_active = {"database": BENCH_DATABASE, "redis_db": BENCH_REDIS_DB, "var": BENCH_VAR}
STATUS_ENDPOINTS = ("monitor_groups_status", "current_status", "msp_monitors_status")

# The worker model `make run`, the Procfile and deploy/msp-dashboard-worker@.service use.
DEFAULT_POOL = "threads"


def say(message: str) -> None:
    print(message, flush=True)


# --- the environment ---------------------------------------------------------------------------


def configure(
    sim_url: str, *, database: str = BENCH_DATABASE, redis_db: int = BENCH_REDIS_DB,
    var: Path = BENCH_VAR, **extra: str,
) -> dict[str, str]:  # fmt: skip
    """Point this process (and the worker it starts) at the simulator, the benchmark database,
    the benchmark Redis database and var/bench/. Returns what was set, for the report."""
    _active.update(database=database, redis_db=redis_db, var=var)
    var.mkdir(parents=True, exist_ok=True)
    values = {
        "DJANGO_SETTINGS_MODULE": "msp_dashboard.settings",
        "DEMO": "1",  # keys generated under VAR_DIR
        "DEBUG": "0",  # DEBUG keeps every query in memory
        "VAR_DIR": str(var),
        "SITE24X7_API_URL": sim_url,
        "SITE24X7_ACCOUNTS_URL": sim_url,
        "REFRESH_STAGGER_FRACTION": "0",  # one round as fast as the system can do it
        "CACHE_KEY_PREFIX": "bench",
        **extra,
    }
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url:
        values["DATABASE_URL"] = _with_path(database_url, f"/{database}")
    else:
        values["DATABASE_URL"] = f"sqlite:///{var / 'bench.sqlite3'}"
    redis_url = os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL", "")
    if redis_url and not os.environ.get("BENCH_REDIS_URL"):
        redis_url = _with_path(redis_url, f"/{redis_db}")
    values["REDIS_URL"] = redis_url
    os.environ.update(values)
    return values


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def services_used() -> dict[str, bool]:
    return {
        "postgresql": os.environ.get("DATABASE_URL", "").startswith("postgres"),
        "redis": bool(os.environ.get("REDIS_URL")),
    }


def machine() -> dict[str, object]:
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "python_loop_s": python_loop_s(),
    }


def python_loop_s() -> float:
    """Seconds one core takes for ten million additions in a Python loop, now: the speed of
    the machine at the time of the run (a shared VM's varies from run to run by half and
    more), for comparing figures across runs and machines."""
    started, total = time.perf_counter(), 0
    for i in range(10_000_000):
        total += i
    return round(time.perf_counter() - started, 2)


def prepare_database() -> None:
    """Create the benchmark database if needed, migrate it and empty it; empty the benchmark
    Redis database (broker and cache) too."""
    import django

    url = os.environ["DATABASE_URL"]
    if url.startswith("postgres"):
        _create_postgres_database(url)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
    _flush_bench_redis()


def _create_postgres_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin.replace("postgres://", "postgresql://", 1), autocommit=True) as db:
        exists = db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            db.execute(f'CREATE DATABASE "{name}"')
            say(f"created database {name}")


def _flush_bench_redis() -> None:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        return
    import redis

    db = redis.Redis.from_url(url)
    index = db.connection_pool.connection_kwargs.get("db", 0)
    if not os.environ.get("BENCH_REDIS_URL") and index != _active["redis_db"]:
        raise SystemExit(f"refusing to flush Redis db {index}: not the benchmark's")
    # Only a database that is empty or was last flushed by a benchmark: someone else may use
    # the same index on a shared server.
    if db.dbsize() and db.get(OWNER_KEY) is None:
        raise SystemExit(
            f"Redis db {index} holds keys this benchmark did not write: set BENCH_REDIS_URL "
            "to an unused database"
        )
    db.flushdb()
    db.set(OWNER_KEY, "benchmarks")


# --- subprocesses ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Simulator:
    """`python -m site24x7_simulator` in its own process, as the brief of the benchmark asks."""

    def __init__(self, *, customers: int, latency_ms: float, seed: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable, "-m", "site24x7_simulator", "--port", str(self.port),
            "--customers", str(customers), "--latency-ms", str(latency_ms),
            "--seed", str(seed), "--drift-seconds", "0",
        ]  # fmt: skip
        self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if "simulator on" not in line:
            self.stop()
            raise SystemExit(f"the simulator did not start: {line!r}")
        self.session = requests.Session()
        self.pid = self.process.pid

    def get(self, path: str) -> dict:
        response = self.session.get(f"{self.url}/_sim/{path}", timeout=60)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, payload: dict | None = None) -> dict:
        response = self.session.post(f"{self.url}/_sim/{path}", json=payload or {}, timeout=60)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        stop_process(self.process)


class Worker:
    """`celery -A msp_dashboard worker` subprocess(es) with the benchmark's environment; its
    log goes to var/bench/worker-<n>.log. `processes` > 1 starts that many workers, each with
    `concurrency` // processes slots (for comparing models; the default is one)."""

    def __init__(
        self, *, pool: str, concurrency: int, processes: int = 1, loglevel: str = "INFO"
    ) -> None:
        self.pool, self.concurrency, self.processes = pool, concurrency, processes
        self.logs = [_active["var"] / f"worker-{i}.log" for i in range(processes)]
        self.procs = []
        each = max(1, concurrency // processes)
        for index, log in enumerate(self.logs):
            cmd = [
                sys.executable, "-m", "celery", "-A", "msp_dashboard", "worker",
                "--pool", pool, "--concurrency", str(each), "--loglevel", loglevel,
                "--without-gossip", "--without-mingle",
                "-n", f"bench{index}@%h",
            ]  # fmt: skip
            handle = open(log, "w")  # noqa: SIM115 - kept open for the process's life
            self.procs.append(
                subprocess.Popen(cmd, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
            )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        """Until every worker answers a remote-control ping (its consumer is running)."""
        from msp_dashboard.celery import app

        names = {f"bench{i}@{socket.gethostname()}" for i in range(self.processes)}
        deadline = time.monotonic() + timeout
        while True:
            answered = {name for reply in app.control.ping(timeout=0.5) for name in reply}
            if names <= answered:
                return
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                tail = "\n".join(log.read_text(errors="replace")[-2000:] for log in self.logs)
                self.stop()
                raise SystemExit(f"the worker did not start:\n{tail}")

    def rss_mb(self) -> float:
        """Resident memory of every worker process and its children (prefork), in MB."""
        return sum(tree_rss_kb(p.pid) for p in self.procs) / 1024

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)


@contextlib.contextmanager
def profiled(pids: list[int], path: str) -> Iterator[None]:
    """Sample the worker with py-spy (pip install py-spy; not a dependency) while the block
    runs, writing collapsed stacks of busy threads to `path`; nothing when `path` is empty.
    PROFILE_WALL=1 samples every thread, waiting or not (py-spy --idle): where the wall time
    goes rather than the CPU."""
    if not path:
        yield
        return
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if not spy:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    spies = []
    for pid in pids:
        output = f"{path}.{pid}" if len(pids) > 1 else path
        cmd = [spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
               "--nonblocking", "--subprocesses", "--output", output]  # fmt: skip
        cmd.insert(-2, "--idle" if os.environ.get("PROFILE_WALL") == "1" else "--gil")
        spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        say(f"profile: {path}")


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tree_rss_kb(pid: int) -> int:
    total = _rss_kb(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            total += tree_rss_kb(int(child))
    return total


def _rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (prefork)."""
    total = _own_cpu_seconds(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            total += cpu_seconds(int(child))
    return total


def _own_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


class CpuMeter:
    """CPU used during a block: by the machine (all processes, all cores), by the worker
    process(es) and by the simulator, so a reader sees where the cores went and whether
    something else was running."""

    def __init__(self, worker_pids: list[int], sim_pid: int) -> None:
        self.worker_pids, self.sim_pid = worker_pids, sim_pid

    def __enter__(self) -> CpuMeter:
        self.load_before = os.getloadavg()[0]
        self.start = (system_cpu(), self._worker(), cpu_seconds(self.sim_pid), time.monotonic())
        return self

    def __exit__(self, *exc) -> None:
        (busy0, total0), worker0, sim0, t0 = self.start
        busy1, total1 = system_cpu()
        self.wall = time.monotonic() - t0
        self.machine_busy_s = busy1 - busy0
        self.machine_util = (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
        self.worker_s = self._worker() - worker0
        self.sim_s = cpu_seconds(self.sim_pid) - sim0

    def _worker(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.worker_pids)

    def figures(self, refreshes: int) -> dict[str, float]:
        per = 1000 / refreshes if refreshes else 0.0
        return {
            "loadavg_1m_before": round(self.load_before, 2),
            "machine_cpu_util": round(self.machine_util, 3),
            "machine_cpu_ms_per_refresh": round(self.machine_busy_s * per, 2),
            "worker_cpu_s": round(self.worker_s, 2),
            "worker_cpu_ms_per_refresh": round(self.worker_s * per, 2),
            "sim_cpu_ms_per_refresh": round(self.sim_s * per, 2),
        }


# --- customers with credentials ----------------------------------------------------------------


def legacy_setup(sim: Simulator, threads: int = 32) -> int:
    """The MSP authtoken syncs the portals (customer_sync), then each customer gets a portal
    authtoken made by the client over HTTP (in parallel) and stored with credential_import."""
    from django.db import transaction

    from portals.models import Customer
    from portals.services import customer_sync
    from tokens.models import CredentialKind, CredentialOrigin
    from tokens.services import credential_import
    from tokens.upstream import get_client

    msp = sim.get("credentials")["msp_authtoken"]
    credential = credential_import(kind=CredentialKind.MSP_AUTHTOKEN, secret=msp, label="MSP")
    customer_sync(credential=credential)
    logins = {c["portal_id"]: c for c in sim.get("customers")["customers"]}
    customers = list(Customer.objects.order_by("pk"))
    client = get_client("US")

    def create(customer):
        login = logins[customer.portal_id]
        token = client.create_portal_authtoken(
            portal_id=customer.portal_id,
            email=login["email"],
            password=login["password"],
            desc="msp_dashboard benchmark",
        )
        return customer, token

    with ThreadPoolExecutor(threads) as pool:
        made = list(pool.map(create, customers))
    with transaction.atomic():
        for customer, token in made:
            credential_import(
                kind=CredentialKind.PORTAL_AUTHTOKEN, secret=token, customer=customer,
                data_centre=customer.data_centre, origin=CredentialOrigin.CREATED,
            )  # fmt: skip
    return len(customers)


def oauth_setup(sim: Simulator) -> int:
    """One OAuth identity (connected with the grant code) reads every customer."""
    from portals.models import Customer
    from portals.services import customer_sync
    from tokens.services import credential_oauth_connect

    creds = sim.get("credentials")
    credential = credential_oauth_connect(
        client_id=creds["client_id"],
        client_secret=creds["client_secret"],
        grant_code=creds["grant_code"],
        label="OAuth",
    )
    customer_sync(credential=credential)
    return Customer.objects.count()


# --- one round ---------------------------------------------------------------------------------


def run_round(expected: int, timeout: float) -> dict[str, float]:
    """Enqueue beat's fan-out through the broker and wait until every customer has an outcome
    of this round; seconds from the fan-out to the last customer written, and the tallies."""
    from django.conf import settings
    from django.db.models import Max, Q

    from portals.models import Customer
    from portals.tasks import refresh_due

    started = time.time()
    started_at = _aware(started)
    refresh_due.apply_async(expires=settings.REFRESH_INTERVAL)
    this_round = Q(last_success_at__gte=started_at) | Q(last_attempt_at__gte=started_at)
    done = wait_until(
        lambda: Customer.objects.filter(this_round).count() >= expected, timeout=timeout
    )
    observed = time.time()
    ok = Customer.objects.filter(last_success_at__gte=started_at)
    last_write = ok.aggregate(last=Max("last_success_at"))["last"]
    failed = Customer.objects.filter(last_attempt_at__gte=started_at).exclude(
        last_success_at__gte=started_at
    )
    ok_count, failed_count = ok.count(), failed.count()
    end = last_write.timestamp() if last_write and not failed_count else observed
    return {
        "wall_s": round(end - started, 3),
        "ok": ok_count,
        "failed": failed_count,
        "complete": done,
        "in_flight_avg": _in_flight(ok, end - started),
    }


def _in_flight(ok, wall: float) -> float | None:
    """How many refresh messages were being worked on, on average over the round (at best
    the concurrency C): a message's customers share their fetch start (data_fetched_at, the
    batch's start) and it ends when they are stored (last_success_at)."""
    spans: dict = {}
    for start, stored in ok.values_list("data_fetched_at", "last_success_at"):
        spans[start] = max(stored, spans.get(start, stored))
    busy = sum((stored - start).total_seconds() for start, stored in spans.items())
    return round(busy / wall, 1) if wall > 0 else None


def next_round() -> None:
    """Let the next fan-out claim every customer again: its guard skips customers enqueued
    within half an interval, so move their last enqueue one interval back (as if the
    interval had passed; rounds then run back to back)."""
    from datetime import timedelta

    from django.conf import settings
    from django.db.models import F

    from portals.models import Customer

    back = timedelta(seconds=settings.REFRESH_INTERVAL)
    Customer.objects.filter(refresh_enqueued_at__isnull=False).update(
        refresh_enqueued_at=F("refresh_enqueued_at") - back
    )


def _aware(epoch: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC)


def wait_until(condition: Callable[[], bool], *, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def upstream_figures(sim: Simulator) -> dict[str, int]:
    counters = sim.get("counters")
    requests_by_endpoint = counters["requests"]
    return {
        "upstream_calls": sum(requests_by_endpoint[e] for e in STATUS_ENDPOINTS),
        "upstream_requests_total": sum(requests_by_endpoint.values()),
        "connections": counters["connections"],
        "cookie_conflicts": counters.get("cookie_conflicts", 0),
    }


def emit(figures: dict) -> None:
    """The closing line: every figure, as one JSON object."""
    print(json.dumps(figures, sort_keys=True), flush=True)
