"""Worker memory over many refresh rounds (PERF-08: RSS after round 200 within 10 % of round 10).

    .venv/bin/python benchmarks/worker_memory.py --customers 500 --rounds 200 \\
        [--concurrency 32] [--auth legacy|oauth] [--pool threads]

The same real path as refresh_cycle.py (simulator subprocess, customers with real credentials,
a real Celery worker subprocess, beat's fan-out through the broker, Redis and PostgreSQL when
REDIS_URL / DATABASE_URL are set), with upstream latency 0 and rounds back to back. Between
rounds the fan-out's per-round guard (`refresh_enqueued_at`) is moved back, as if half an
interval had passed; the call budget is raised for the run (200 calls per customer in minutes
would spend Site24x7's real budget, which is what the budget is for). Prints the worker's RSS
every 10 rounds; the last line is one JSON object."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as c

BASELINE_ROUND = 10
LIMIT = 0.10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--auth", choices=("legacy", "oauth"), default="legacy")
    parser.add_argument("--pool", default=c.DEFAULT_POOL, help="Celery worker pool")
    parser.add_argument("--loglevel", default="INFO", help="worker log level (production: INFO)")
    parser.add_argument("--every", type=int, default=10, help="print RSS every N rounds")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    n = args.customers
    c.say(f"worker memory: {n} customers, {args.rounds} rounds, latency 0, concurrency "
          f"{args.concurrency}, auth {args.auth}, pool {args.pool}")  # fmt: skip
    sim = c.Simulator(customers=n, latency_ms=0)
    worker = None
    samples: list[dict] = []
    try:
        env = c.configure(sim.url, **c.MEMORY, SITE24X7_CALL_BUDGET="1000000000")
        services = c.services_used()
        c.say(f"database {env['DATABASE_URL']}; broker {env['REDIS_URL'] or 'filesystem'}")
        c.prepare_database()
        (c.legacy_setup if args.auth == "legacy" else c.oauth_setup)(sim)
        worker = c.Worker(pool=args.pool, concurrency=args.concurrency, loglevel=args.loglevel)
        idle = worker.rss_mb()
        c.say(f"worker ready (pids {worker.pids()}), RSS {idle:.1f} MB")
        clock = time.monotonic()
        for number in range(1, args.rounds + 1):
            if number > 1:
                c.next_round()
            result = c.run_round(n, timeout=max(120.0, n / 5))
            if not result["complete"] or result["failed"]:
                c.say(f"round {number} incomplete: {result}")
                break
            sample = {"round": number, "rss_mb": round(worker.rss_mb(), 1), **result}
            samples.append(sample)
            if number == 1 or number % args.every == 0:
                rate = n / result["wall_s"]
                c.say(f"round {number:4d}: RSS {sample['rss_mb']:7.1f} MB, "
                      f"round {result['wall_s']:.2f} s ({rate:.0f} refreshes/s)")  # fmt: skip
        elapsed = time.monotonic() - clock
        upstream = c.upstream_figures(sim)
    finally:
        if worker:
            worker.stop()
        sim.stop()
    figures = summarise(samples, args, idle, elapsed)
    figures.update(upstream_calls=upstream["upstream_calls"], connections=upstream["connections"])
    figures.update(services, **c.machine())
    verdict = "within" if figures["pass"] else "NOT within"
    c.say(f"RSS round {BASELINE_ROUND}: {figures['rss_round_10_mb']} MB, round "
          f"{figures['rounds_done']}: {figures['rss_last_mb']} MB, growth "
          f"{figures['growth_pct']} % ({verdict} {LIMIT:.0%})")  # fmt: skip
    c.emit(figures)
    return 0 if figures["pass"] else 1


def summarise(samples: list[dict], args, idle: float, elapsed: float) -> dict:
    by_round = {s["round"]: s["rss_mb"] for s in samples}
    base = by_round.get(BASELINE_ROUND)
    last = samples[-1]["rss_mb"] if samples else None
    growth = (last - base) / base if base and last else None
    walls = [s["wall_s"] for s in samples]
    return {
        "benchmark": "worker_memory",
        "customers": args.customers,
        "rounds": args.rounds,
        "rounds_done": len(samples),
        "concurrency": args.concurrency,
        "auth": args.auth,
        "pool": args.pool,
        "rss_idle_mb": round(idle, 1),
        "rss_round_1_mb": by_round.get(1),
        "rss_round_10_mb": base,
        "rss_last_mb": last,
        "rss_max_mb": max(by_round.values()) if by_round else None,
        "rss_every_10_mb": [by_round[r] for r in sorted(by_round) if r % 10 == 0],
        "growth_pct": round(100 * growth, 2) if growth is not None else None,
        "pass": bool(growth is not None and growth < LIMIT and len(samples) == args.rounds),
        "round_s_median": round(sorted(walls)[len(walls) // 2], 3) if walls else None,
        "refreshes_total": args.customers * len(samples),
        "elapsed_s": round(elapsed, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
