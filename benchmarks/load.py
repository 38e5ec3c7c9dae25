"""The grid under load: locust, headless, against gunicorn serving the app the production way.

    .venv/bin/python benchmarks/load.py --customers 1000 --groups 10 --users 20 --seconds 60
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python benchmarks/load.py

Seeds the grid benchmark's database (benchmarks/grid.py: `msp_bench_grid` on PostgreSQL,
else var/bench-grid/grid.sqlite3) with N customers x G groups, starts `gunicorn
msp_dashboard.wsgi --workers 3` (deploy/msp-dashboard-web.service runs 3 workers; its
`--threads 4` is --threads, slower here: the grid's requests are CPU-bound Python) on a free
loopback port, then runs locust headless (installed
from requirements-bench.txt when missing: a benchmark tool, not an app or test dependency).
Users start --spawn-rate a second; each logs in through the login form, then polls the grid's
partial every 5 s the way static/js/app.js does (htmx headers, the X-Grid-Version it holds,
so it gets 204 or only the changed rows), and now and then loads the page, /grid.json or a
customer page.

--churn R writes R customer refreshes per second through the real write path
(portals.services.customer_store_groups, one group's status flipped now and then) while the
users poll, as a refresh round spread over the interval does (1,000 customers every 300 s with
the default stagger is about 7 a second); 0 keeps the data still.

Figures: locust's own per request kind and aggregated (`stats`: requests, failures, p50_ms,
p95_ms, p99_ms, max_ms, rps), and `steady`: the same from every request's own time after the
first --warmup seconds (the logins, slow on purpose: password hashing, and the cold caches left
out), per kind and for "grid" (every request but the logins); the share of polls answered 204;
gunicorn's RSS and CPU seconds (and per request); the load average before and after (other
work on the machine shows in the times). Locust's CSV files and the samples are kept in
var/bench-grid/. The last line is one JSON object."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "bench-load-password-1"  # noqa: S105 - a throwaway user in the benchmark database
USERNAME = "loaduser"
POLL_SECONDS = 5


# --- gunicorn ------------------------------------------------------------------------------------


class Gunicorn:
    """`gunicorn msp_dashboard.wsgi` as a subprocess on a free loopback port (this process's
    environment: the benchmark database); its log goes to var/bench-grid/gunicorn.log."""

    def __init__(self, *, workers: int, threads: int = 1, log_name: str = "gunicorn.log") -> None:
        from benchmarks._common import free_port
        from benchmarks.grid import BENCH_VAR

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = BENCH_VAR / log_name
        cmd = [
            sys.executable, "-m", "gunicorn", "msp_dashboard.wsgi",
            "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
            "--threads", str(threads),
            "--access-logfile", "-", "--log-level", "warning",
        ]  # fmt: skip
        handle = open(self.log, "w")  # noqa: SIM115 - kept open for the process's life
        self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                requests.get(f"{self.url}/login/", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-3000:]
        self.stop()
        raise SystemExit(f"gunicorn did not start:\n{tail}")

    def rss_mb(self) -> float:
        from benchmarks._common import tree_rss_kb

        return round(tree_rss_kb(self.process.pid) / 1024, 1)

    def cpu_s(self) -> float:
        """CPU seconds used so far by the master and its workers."""
        pids = [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        if children.exists():
            pids += [int(pid) for pid in children.read_text().split()]
        return sum(_own_cpu_s(pid) for pid in pids)

    def stop(self) -> None:
        from benchmarks._common import stop_process

        stop_process(self.process)


def _own_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ensure_locust() -> None:
    if importlib.util.find_spec("locust") is None:
        print("installing locust (requirements-bench.txt)", flush=True)
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "--quiet",
             "-r", str(ROOT / "requirements.txt"), "-r", str(ROOT / "requirements-bench.txt")]
        )  # fmt: skip


def make_user() -> None:
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user_model.objects.filter(username=USERNAME).delete()
    user_model.objects.create_superuser(USERNAME, password=PASSWORD)


# --- churn: refreshes landing while the users poll ------------------------------------------------


class Churn(threading.Thread):
    """`rate` refreshes a second through portals.services.customer_store_groups."""

    def __init__(self, rate: float) -> None:
        super().__init__(daemon=True)
        self.rate, self.done, self.stopping = rate, 0, threading.Event()

    def run(self) -> None:
        from django.db import close_old_connections

        from portals.models import Customer

        ids = list(Customer.objects.filter(is_active=True).values_list("pk", flat=True))
        rng = random.Random(11)
        while not self.stopping.wait(1 / self.rate):
            self._refresh(rng.choice(ids), rng)
            self.done += 1
        close_old_connections()

    @staticmethod
    def _refresh(customer_id: int, rng: random.Random) -> None:
        from django.utils import timezone

        from msp_dashboard.site24x7 import GroupStatus, Status
        from portals.models import MonitorGroup
        from portals.services import customer_store_groups

        groups = [
            GroupStatus(
                g.group_id,
                g.name,
                Status(g.status) if g.status >= 0 else Status.UP,
                g.monitors,
                g.error_monitors,
                g.top_group,
            )  # fmt: skip
            for g in MonitorGroup.objects.filter(customer_id=customer_id)
        ]
        if groups and rng.random() < 0.3:
            i = rng.randrange(len(groups))
            flipped = Status.DOWN if groups[i].status is Status.UP else Status.UP
            groups[i] = GroupStatus(groups[i].group_id, groups[i].name, flipped,
                                    groups[i].monitors, groups[i].error_monitors,
                                    groups[i].top_group)  # fmt: skip
        customer_store_groups(customer_id=customer_id, groups=groups, started=timezone.now())

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


# --- locust's results --------------------------------------------------------------------


def read_stats(prefix: Path) -> dict[str, dict]:
    figures = {}
    with open(f"{prefix}_stats.csv", newline="") as handle:
        for line in csv.DictReader(handle):
            name = line["Name"] if line["Name"] != "Aggregated" else "all"
            figures[name] = {
                "requests": int(line["Request Count"]),
                "failures": int(line["Failure Count"]),
                "p50_ms": _num(line["50%"]),
                "p95_ms": _num(line["95%"]),
                "p99_ms": _num(line["99%"]),
                "max_ms": _num(line["Max Response Time"]),
                "rps": round(float(line["Requests/s"]), 2),
            }
    return figures


def steady_figures(path: Path, *, warmup: float) -> dict[str, dict]:
    """From every request's own time (written by the users): per kind and for all the grid's
    requests together ("grid": everything but the logins), after the first `warmup` seconds."""
    samples = json.loads(path.read_text()) if path.exists() else []
    start = min((at for at, *_ in samples), default=0)
    kept = [(name, ms, ok) for at, name, ms, ok in samples if at - start >= warmup]
    groups: dict[str, list] = {}
    for name, ms, ok in kept:
        groups.setdefault(name, []).append((ms, ok))
        if not name.startswith("login"):
            groups.setdefault("grid", []).append((ms, ok))
    return {name: _percentiles(rows) for name, rows in sorted(groups.items())}


def _percentiles(rows: list[tuple[float, bool]]) -> dict:
    times = sorted(ms for ms, _ in rows)
    at = lambda q: round(times[min(len(times) - 1, int(len(times) * q))], 1)  # noqa: E731
    return {
        "requests": len(rows), "failures": sum(1 for _, ok in rows if not ok),
        "p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": round(times[-1], 1),
    }  # fmt: skip


def _num(value: str) -> float | None:
    try:
        return round(float(value), 1)
    except ValueError:
        return None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=60)
    # deploy/msp-dashboard-web.service runs 3 workers x 4 threads; the grid's requests are
    # CPU-bound Python, and 3 single-threaded workers answered them faster on 2 cores.
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads a worker")
    parser.add_argument("--churn", type=float, default=7.0, help="refreshes per second; 0 none")
    parser.add_argument("--spawn-rate", type=float, default=2.0, help="users started a second")
    parser.add_argument(
        "--warmup", type=float, default=15.0, help="seconds left out of `steady` (logins)"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop gunicorn on the way out
    ensure_locust()
    from benchmarks import grid as g
    from benchmarks._common import emit, machine, say
    from benchmarks.grid import BENCH_VAR

    url = g.configure()
    g.prepare_database(url)
    from django.db import connection

    g.empty_database()
    states = g.seed(args.customers, args.groups)
    make_user()
    say(f"load: {args.customers} x {args.groups}, {args.users} users for {args.seconds} s, "
        f"gunicorn {args.workers} workers x {args.threads} threads, churn {args.churn}/s; "
        f"database {url}")  # fmt: skip
    say(f"seeded: {states}")
    server = Gunicorn(workers=args.workers, threads=args.threads)
    churn = Churn(args.churn) if args.churn > 0 else None
    prefix = BENCH_VAR / "load"
    try:
        if churn:
            churn.start()
        samples_file = BENCH_VAR / "load_samples.json"
        env = {**os.environ, "LOAD_USERNAME": USERNAME, "LOAD_PASSWORD": PASSWORD,
               "LOAD_SAMPLES": str(samples_file)}  # fmt: skip
        load_before, cpu_before = os.getloadavg(), server.cpu_s()
        own_before = time.process_time()
        cmd = [
            sys.executable, "-m", "locust", "-f", __file__, "--headless",
            "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
            "--run-time", f"{args.seconds}s", "--host", server.url, "--csv", str(prefix),
            "--only-summary", "--stop-timeout", "10",
        ]  # fmt: skip
        result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        print(result.stderr[-4000:], flush=True)
        rss, cpu = server.rss_mb(), server.cpu_s() - cpu_before
        churn_cpu = time.process_time() - own_before
        load_after = os.getloadavg()
    finally:
        if churn:
            churn.stop()
        server.stop()
    stats = read_stats(prefix)
    steady = steady_figures(samples_file, warmup=args.warmup)
    polls = re.findall(r"GET /grid/rows/\S* HTTP/1.1\" (\d+)", server.log.read_text())
    unchanged = round(polls.count("204") / len(polls), 3) if polls else None
    for name, row in stats.items():
        say(f"  {name:16} n {row['requests']:6}  failures {row['failures']}"
            f"  p50 {row['p50_ms']} ms  p95 {row['p95_ms']} ms  p99 {row['p99_ms']} ms"
            f"  max {row['max_ms']} ms")  # fmt: skip
    for name, row in steady.items():
        say(f"  after {args.warmup} s, {name:14} n {row['requests']:5}  failures "
            f"{row['failures']}  p50 {row['p50_ms']} ms  p95 {row['p95_ms']} ms"
            f"  max {row['max_ms']} ms")  # fmt: skip
    served = sum(row["requests"] for name, row in stats.items() if name != "all")
    say(
        f"polls answered 204 (unchanged): {unchanged}; gunicorn RSS {rss} MB, CPU {cpu:.1f} s "
        f"({cpu / max(1, served) * 1000:.0f} ms a request); refreshes written "
        f"{churn.done if churn else 0} (this process's CPU {churn_cpu:.1f} s); load average "
        f"{load_before[0]:.1f} -> {load_after[0]:.1f}"
    )
    emit({
        "benchmark": "load", "database": connection.vendor, "database_url": url,
        "machine": machine(), "customers": args.customers, "groups": args.groups,
        "users": args.users, "seconds": args.seconds, "workers": args.workers,
        "threads": args.threads,
        "churn_per_s": args.churn, "refreshes_written": churn.done if churn else 0,
        "stats": stats, "steady": steady, "warmup_s": args.warmup,
        "poll_204_share": unchanged, "gunicorn_rss_mb": rss, "gunicorn_cpu_s": round(cpu, 1),
        "gunicorn_cpu_ms_per_request": round(cpu / max(1, served) * 1000, 1),
        "churn_cpu_s": round(churn_cpu, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after], "spawn_rate": args.spawn_rate,
        "locust_exit": result.returncode,
    })  # fmt: skip
    return 0 if result.returncode == 0 and stats.get("all", {}).get("failures", 1) == 0 else 1


# --- the simulated users (locust imports this file with -f) ---------------------------------
# Only then: importing locust patches the standard library with gevent (paint.py imports this
# file for Gunicorn and must not get that).

if "locust" in sys.modules:
    from locust import HttpUser, constant_pacing, events, task

    SAMPLES: list[tuple[float, str, float, bool]] = []

    @events.request.add_listener
    def _sample(request_type, name, response_time, exception, **kwargs) -> None:
        SAMPLES.append((time.time(), name, response_time, exception is None))

    @events.test_stop.add_listener
    def _write_samples(**kwargs) -> None:
        Path(os.environ["LOAD_SAMPLES"]).write_text(json.dumps(SAMPLES))

    class DashboardUser(HttpUser):
        """A NOC screen: logs in, polls the partial every 5 s like app.js, sometimes opens the
        page, the JSON or a customer page."""

        wait_time = constant_pacing(POLL_SECONDS)

        def on_start(self) -> None:
            self.version = ""
            self.customers: list[str] = []
            self.client.get("/login/", name="login form")
            token = self.client.cookies.get("csrftoken", "")
            response = self.client.post(
                "/login/?next=/",
                data={"username": os.environ["LOAD_USERNAME"],
                      "password": os.environ["LOAD_PASSWORD"], "csrfmiddlewaretoken": token},
                headers={"Referer": f"{self.host}/login/"},
                name="login",
            )  # fmt: skip
            if 'id="grid-live"' not in response.text:
                raise RuntimeError(f"login failed: HTTP {response.status_code}")
            self._remember(response.text)

        def _remember(self, html: str) -> None:
            found = re.search(r'data-version="([0-9a-f]+)"', html)
            self.version = found.group(1) if found else ""
            self.customers = re.findall(r'href="(/customers/\d+/)"', html[:400_000])[:50]

        @task(20)
        def poll(self) -> None:
            headers = {"HX-Request": "true", "HX-Current-URL": f"{self.host}/",
                       "X-Grid-Version": self.version}  # fmt: skip
            with self.client.get(
                "/grid/rows/", headers=headers, name="partial (poll)", catch_response=True
            ) as response:
                if response.status_code == 200:
                    self.version = response.headers.get("X-Grid-Version", "")
                    response.success()
                elif response.status_code == 204:
                    response.success()
                else:
                    response.failure(f"HTTP {response.status_code}")

        @task(1)
        def page(self) -> None:
            response = self.client.get("/", name="page")
            self._remember(response.text)

        @task(1)
        def json(self) -> None:
            self.client.get("/grid.json", name="grid.json")

        @task(1)
        def customer(self) -> None:
            if self.customers:
                self.client.get(random.choice(self.customers), name="customer page")


if __name__ == "__main__":
    raise SystemExit(main())
