"""CPU per refresh of the worker's refresh path, in one thread (issue 7: what the round costs).

    .venv/bin/python benchmarks/refresh_cpu.py [--customers 400] [--batch 8] [--rounds 6] \\
        [--auth legacy|oauth]

refresh_cycle.py measures a whole round, whose wall time on a small shared machine follows the
CPU that every process on it spends; its figures move by a third between runs as the machine's
speed does. This script measures the one figure the code decides: the CPU one refresh costs the
process that runs it. It runs the same service a worker thread runs for a message
(`customers_refresh_batch`: reads, leases, budget, the upstream calls, the store, the alert
engine after commit), batch after batch in this one thread, against a simulator subprocess at
latency 0, with Redis and PostgreSQL when REDIS_URL / DATABASE_URL are set. It reports this
process's CPU per refresh and the PostgreSQL server process's (the connection's backend), the
first round (every group new) and the second (the alert engine's streaks reach the hold)
apart from the steady ones, and `python_loop_s` before and after.
Celery's own handling of a message is not in it (refresh_cycle.py has it). Compare two
versions of the code by running it from each, one after the other; the last line is JSON."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as c


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8, help="customers per message")
    parser.add_argument("--rounds", type=int, default=6, help="the first, then steady ones")
    parser.add_argument("--auth", choices=("legacy", "oauth"), default="legacy")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    c.say(f"refresh CPU: {args.customers} customers, batches of {args.batch}, auth {args.auth}")
    loop_before = c.python_loop_s()
    sim = c.Simulator(customers=args.customers, latency_ms=0)
    try:
        c.configure(sim.url, SITE24X7_CALL_BUDGET="1000000")
        c.prepare_database()
        setup = c.legacy_setup(sim) if args.auth == "legacy" else c.oauth_setup(sim)
        c.say(f"setup: {setup} customers; python_loop_s {loop_before}")
        rounds = [_round(number, args.batch) for number in range(1, args.rounds + 1)]
        upstream = c.upstream_figures(sim)
    finally:
        sim.stop()
    steady = rounds[2:] or rounds[1:] or rounds  # round 2 settles the alert engine's streaks
    figures = {
        "benchmark": "refresh_cpu",
        "auth": args.auth,
        "batch": args.batch,
        "customers": args.customers,
        "first_cpu_ms": rounds[0]["cpu_ms"],
        "steady_cpu_ms": round(statistics.median(r["cpu_ms"] for r in steady), 3),
        "steady_db_cpu_ms": round(statistics.median(r["db_cpu_ms"] for r in steady), 3),
        "python_loop_s_before": loop_before,
        "python_loop_s_after": c.python_loop_s(),
        "rounds": rounds,
        **upstream,
        **c.services_used(),
    }
    c.say(f"steady: {figures['steady_cpu_ms']} ms of this process's CPU per refresh, "
          f"{figures['steady_db_cpu_ms']} ms of PostgreSQL's")  # fmt: skip
    c.emit(figures)
    return 0


def _round(number: int, batch: int) -> dict[str, float]:
    from django.db import connection

    from portals.models import Customer
    from portals.services import customers_refresh_batch

    pks = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
    backend = _backend_pid(connection)
    db_before = c.cpu_seconds(backend) if backend else 0.0
    cpu, wall = time.process_time(), time.perf_counter()
    results = []
    for start in range(0, len(pks), batch):
        results += customers_refresh_batch(customer_ids=pks[start : start + batch])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    db = (c.cpu_seconds(backend) - db_before) if backend else 0.0
    ok = sum(1 for outcome in results if outcome.result == "ok")
    figures = {
        "round": number,
        "ok": ok,
        "cpu_ms": round(1000 * cpu / len(pks), 3),
        "db_cpu_ms": round(1000 * db / len(pks), 3),
        "wall_ms": round(1000 * wall / len(pks), 3),
    }
    c.say(f"round {number}: ok {ok} of {len(pks)}; CPU {figures['cpu_ms']} ms per refresh "
          f"(PostgreSQL {figures['db_cpu_ms']} ms), wall {figures['wall_ms']} ms")  # fmt: skip
    c.next_round()
    return figures


def _backend_pid(connection) -> int | None:
    """The PostgreSQL server process serving this connection (None on SQLite)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


if __name__ == "__main__":
    raise SystemExit(main())
