"""Refresh rounds through the real path, timed (PERF-03/04/05).

    .venv/bin/python benchmarks/refresh_cycle.py --customers 1000 --latency-ms 100 \\
        --concurrency 32 [--auth legacy|oauth] [--source per_customer|msp_wide] [--pool threads]
        [--processes 1] [--rounds 2]

Starts a fresh simulator (its own process) with N customers and upstream latency L, gives each
customer a credential through the real services (legacy: customer_sync with the MSP authtoken,
then one portal authtoken per customer, made over HTTP and stored with credential_import;
oauth: one identity connected with the grant code), starts a real Celery worker subprocess,
enqueues beat's fan-out `refresh_due` through the broker (REFRESH_STAGGER_FRACTION=0: the
round as fast as the system can) and waits until every customer has this round's outcome.
Round 1 stores everything for the first time; later rounds are the steady state. Redis and
PostgreSQL are used when REDIS_URL / DATABASE_URL are set (a database `msp_bench` and Redis
db 15, never the tests' ones); else SQLite and the filesystem broker under var/bench/.

Figures per round: wall_s (fan-out to the last customer written), ideal_s = N*L/C, ratio,
refreshes_per_s, upstream_calls (status calls counted by the simulator), connections (TCP
connections that carried them), worker_rss_mb, CPU per refresh (worker, simulator, machine)
and the load average before the round. Top-level figures are round 1's; the last line is one
JSON object (benchmarks/README.md)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as c


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--auth", choices=("legacy", "oauth"), default="legacy")
    parser.add_argument(
        "--source", choices=("per_customer", "msp_wide"), default="per_customer",
        help="OAuth refresh source (SITE24X7_OAUTH_REFRESH_SOURCE; msp_wide needs --auth oauth)",
    )  # fmt: skip
    parser.add_argument("--pool", default=c.DEFAULT_POOL, help="Celery worker pool")
    parser.add_argument("--processes", type=int, default=1, help="worker processes (C split)")
    parser.add_argument("--loglevel", default="INFO", help="worker log level (production: INFO)")
    parser.add_argument("--timeout", type=float, default=0, help="seconds; 0: from the ideal")
    parser.add_argument("--profile", default="", help="py-spy raw (collapsed) stacks to this file")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds to run: the first, then steady ones"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    n, latency, conc = args.customers, args.latency_ms, args.concurrency
    if args.source == "msp_wide" and args.auth != "oauth":
        raise SystemExit("--source msp_wide reads OAuth customers: add --auth oauth")
    c.say(f"refresh round: {n} customers, latency {latency:g} ms, concurrency {conc}, "
          f"auth {args.auth} ({args.source}), pool {args.pool} x {args.processes}")  # fmt: skip
    sim = c.Simulator(customers=n, latency_ms=latency)
    worker, rounds = None, []
    try:
        env = c.configure(sim.url, SITE24X7_OAUTH_REFRESH_SOURCE=args.source)
        services = c.services_used()
        c.say(f"simulator {sim.url}; database {env['DATABASE_URL']}; "
              f"broker {env['REDIS_URL'] or 'filesystem'}")  # fmt: skip
        clock = time.monotonic()
        c.prepare_database()
        setup = c.legacy_setup(sim) if args.auth == "legacy" else c.oauth_setup(sim)
        c.say(f"setup: {setup} customers with credentials in {time.monotonic() - clock:.1f} s")
        worker = c.Worker(
            pool=args.pool, concurrency=conc, processes=args.processes, loglevel=args.loglevel
        )
        idle_rss = worker.rss_mb()
        c.say(f"worker ready (pids {worker.pids()}), RSS {idle_rss:.0f} MB")
        for number in range(1, args.rounds + 1):
            if number > 1:
                c.next_round()
            rounds.append(one_round(number, sim, worker, args))
            if not rounds[-1]["complete"]:
                break
    finally:
        if worker:
            worker.stop()
        sim.stop()
    figures = {
        "benchmark": "refresh_cycle",
        "customers": n,
        "latency_ms": latency,
        "concurrency": conc,
        "auth": args.auth,
        "source": args.source,
        "pool": args.pool,
        "processes": args.processes,
        **rounds[0],  # the first round after setup: every group and change is new
        "rounds": rounds,
        "worker_idle_rss_mb": round(idle_rss, 1),
        **services,
        **c.machine(),
    }
    c.emit(figures)
    return 0 if all(r["complete"] and not r["failed"] for r in rounds) else 1


def one_round(number: int, sim, worker, args) -> dict:
    """One round from beat's fan-out to the last customer written, with its figures."""
    n, latency, conc = args.customers, args.latency_ms, args.concurrency
    sim.post("counters/reset")
    ideal = n * latency / 1000 / conc
    timeout = args.timeout or max(120.0, 10 * ideal)
    profile = args.profile if number == args.rounds else ""  # the last, steady round
    with c.profiled(worker.pids(), profile), c.CpuMeter(worker.pids(), sim.pid) as cpu:
        result = c.run_round(n, timeout)
    upstream = c.upstream_figures(sim)
    wall = result["wall_s"]
    figures = {
        "round": number,
        "wall_s": wall,
        "ideal_s": round(ideal, 3),
        "ratio": round(wall / ideal, 3) if ideal else None,
        "refreshes_per_s": round(result["ok"] / wall, 1) if wall else None,
        **result,
        **upstream,
        "upstream_calls_per_customer": round(upstream["upstream_calls"] / n, 3),
        "worker_rss_mb": round(worker.rss_mb(), 1),
        **cpu.figures(result["ok"] + result["failed"]),
    }
    # What the worker's own CPU cost allows, whatever else shares the machine: a process runs
    # Python on one core at a time (the GIL), and there are nproc cores.
    cores = min(args.concurrency if args.pool == "prefork" else args.processes, os.cpu_count())
    worker_ms = figures["worker_cpu_ms_per_refresh"]
    figures["worker_cpu_ceiling_per_s"] = round(1000 * cores / worker_ms, 1) if worker_ms else None
    kind = "first round (all new)" if number == 1 else "steady round"
    c.say(f"round {number}, {kind}: wall {wall:.2f} s (ideal {ideal:.2f} s, ratio "
          f"{figures['ratio']}), {figures['refreshes_per_s']} refreshes/s, ok {result['ok']} "
          f"failed {result['failed']}; messages in flight {result['in_flight_avg']} on "
          f"average (of {conc})")  # fmt: skip
    c.say(f"  upstream status calls {upstream['upstream_calls']} "
          f"({figures['upstream_calls_per_customer']} per customer), all requests "
          f"{upstream['upstream_requests_total']}, connections {upstream['connections']}; "
          f"worker RSS {figures['worker_rss_mb']:.0f} MB")  # fmt: skip
    c.say(f"  CPU: machine {figures['machine_cpu_util']:.0%} busy "
          f"({figures['machine_cpu_ms_per_refresh']} ms per refresh), worker "
          f"{figures['worker_cpu_ms_per_refresh']} ms, simulator "
          f"{figures['sim_cpu_ms_per_refresh']} ms; load before "
          f"{figures['loadavg_1m_before']}; the worker's CPU cost allows "
          f"{figures['worker_cpu_ceiling_per_s']} refreshes/s")  # fmt: skip
    return figures


if __name__ == "__main__":
    sys.exit(main())
