"""The grid, server-side: page, htmx partial and /grid.json at N customers x G groups (issue 7).

    .venv/bin/python benchmarks/grid.py --customers 1000 --groups 10
    .venv/bin/python benchmarks/grid.py --customers 100,1000,5000 --groups 10
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python benchmarks/grid.py ...

Seeds N customers x G top groups (+1 subgroup each) with varied statuses, badges (stale, failed,
never refreshed, throttled, paused, refreshing, invalid or no credential, OAuth) and 24 status
changes of history each, into a database of its own: `msp_bench_grid` on the PostgreSQL server
of DATABASE_URL (created and migrated here), else var/bench-grid/grid.sqlite3; never the tests' one.
Then, logged in as a superuser through Django's test client in this process (the whole
middleware stack, sessions in the database), it requests each URL a few times to warm up and
30 times timed, like a browser would (Accept-Encoding: gzip, the htmx headers for the partial):

    page     /                 the full page (the grid included)
    partial  /grid/rows/       what the page polls every few seconds (htmx)
    unchanged /grid/rows/      the poll when the client already holds the current version
                               (the page's rows are unchanged: 204, nothing to swap)
    changed  /grid/rows/       the poll of a page holding the previous version after N/30
                               customers were refreshed (a round spread over half of a 300 s
                               interval, polled every 5 s): only those rows are sent
    json     /grid.json        the same rows for scripts
    cold     /grid/rows/       the partial with the in-process row cache emptied before each
                               request: what a poll costs when every row changed

Figures per URL: p50_ms, p95_ms, max_ms (wall clock), cpu_p50_ms (this process's CPU time: on
SQLite all the work, on PostgreSQL all but the server's; steadier than the wall clock on a busy
machine), queries (SQL statements of one request), bytes (as sent, gzip) and raw_bytes. With
several sizes, `queries_constant` says whether every URL ran the same number of queries at
every size. `loadavg` is the machine's load when each size started (other work on the machine
shows in the wall clock). The last line is one JSON object with every figure."""

from __future__ import annotations

import argparse
import gzip
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import emit, machine, say  # noqa: E402

BENCH_VAR = ROOT / "var" / "bench-grid"
DATABASE = "msp_bench_grid"
HISTORY = 24  # status changes per customer
FAKE_CIPHERTEXT = "v1:bench:not-a-real-ciphertext"
REQUESTS = 30
WARMUP = 3
HX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://localhost/"}
PASSWORD = "bench-grid-password-1"  # noqa: S105 - a throwaway user in the benchmark database


# --- the environment ------------------------------------------------------------------------


def configure() -> str:
    """The benchmark database (never the tests' one) and var/bench/; returns its URL."""
    BENCH_VAR.mkdir(parents=True, exist_ok=True)
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        parts = urlsplit(url)
        url = urlunsplit((parts.scheme, parts.netloc, f"/{DATABASE}", parts.query, ""))
    else:
        url = f"sqlite:///{BENCH_VAR / 'grid.sqlite3'}"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "msp_dashboard.settings",
            "DEMO": "1",
            "VAR_DIR": str(BENCH_VAR),
            "DATABASE_URL": url,
            "REDIS_URL": "",  # the grid's read path needs no Redis (REL-10)
            "ALLOWED_HOSTS": "localhost,127.0.0.1",
        }
    )
    return url


def prepare_database(url: str) -> None:
    import django

    if url.startswith("postgres"):
        _create_postgres_database(url)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _create_postgres_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin, autocommit=True) as db:
        if not db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            db.execute(f'CREATE DATABASE "{name}"')
            say(f"created database {name}")


def empty_database() -> None:
    """Every table emptied (other apps' rows that point at customers too)."""
    from django.core.management import call_command

    call_command("flush", verbosity=0, interactive=False)


# --- seeding ------------------------------------------------------------------------------------

# Statuses of groups: three customers in four all Up, as in real life; the others' groups
# mostly Up with every other status present.
GROUP_STATUSES = [1] * 12 + [0, 0, 2, 2, 3, 7, 5, 9, 10]
ALL_UP_SHARE = 0.75


def seed(n: int, groups: int, *, rng_seed: int = 7) -> dict[str, int]:
    """n customers with `groups` top groups (+1 subgroup) each, varied states, a token each
    (some invalid or missing), 10 % read through one OAuth identity, HISTORY changes each."""
    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone

    from msp_dashboard.site24x7 import Status as S
    from msp_dashboard.site24x7 import worst_status
    from portals.models import Customer, MonitorGroup, StatusChange
    from tokens.models import Credential, CredentialKind, CredentialOrigin, CredentialState

    rng = random.Random(rng_seed)
    now = timezone.now()
    interval = timedelta(seconds=settings.REFRESH_INTERVAL)
    states: dict[str, int] = {}
    with transaction.atomic():
        identity = Credential.objects.create(
            kind=CredentialKind.OAUTH, label="Bench OAuth", secret_ciphertext=FAKE_CIPHERTEXT,
            secret_last4="oaut", state=CredentialState.ACTIVE,  # noqa: S106 - not a secret
            origin=CredentialOrigin.CONNECTED,
        )  # fmt: skip
        customers, plans = [], []
        for i in range(n):
            mixed = rng.random() >= ALL_UP_SHARE
            statuses = [rng.choice(GROUP_STATUSES) if mixed else 1 for _ in range(groups)]
            worst = int(worst_status([S(s) for s in statuses])) if statuses else -1
            kind = _customer_kind(i, rng)
            states[kind] = states.get(kind, 0) + 1
            oauth = i % 10 == 9
            fetched = now - timedelta(seconds=rng.uniform(1, interval.total_seconds()))
            fields = {
                "name": f"{rng.choice(NAMES)} {i:05d}",
                "data_centre": rng.choice(("US", "US", "US", "EU", "IN", "AU")),
                "auth_generation": "oauth" if oauth else "legacy",
                "portal_id": "" if oauth else f"bench-{i}",
                "zaaid": f"9{i:07d}" if oauth else "",
                "msp_credential": identity if oauth else None,
                "worst_status": worst,
                "worst_status_since": now - timedelta(minutes=rng.uniform(1, 3000)),
                "last_attempt_at": fetched,
                "last_success_at": fetched,
                "data_fetched_at": fetched,
                "last_duration": timedelta(milliseconds=rng.uniform(80, 900)),
            }
            _apply_kind(kind, fields, now, interval, rng)
            customers.append(Customer(**fields))
            plans.append(statuses)
        customers = Customer.objects.bulk_create(customers, batch_size=1000)
        if customers and customers[0].pk is None:
            customers = list(Customer.objects.order_by("pk"))
        MonitorGroup.objects.bulk_create(_groups(customers, plans, now, rng), batch_size=2000)
        Credential.objects.bulk_create(_tokens(customers, states, rng), batch_size=2000)
        StatusChange.objects.bulk_create(_history(customers, plans, now, rng), batch_size=5000)
    return states


NAMES = (
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Wonka",
    "Tyrell", "Cyberdyne", "Soylent", "Gringotts", "Oceanic", "Massive Dynamic", "Aperture",
    "Black Mesa", "Monarch", "Dunder Mifflin", "Pied Piper", "Nakatomi", "Zorg",
)  # fmt: skip


def _customer_kind(i: int, rng: random.Random) -> str:
    roll = rng.random()
    for kind, share in (
        ("stale", 0.04), ("failed", 0.03), ("never", 0.01), ("throttled", 0.02),
        ("paused", 0.02), ("refreshing", 0.02), ("invalid", 0.03), ("no-credential", 0.02),
    ):  # fmt: skip
        if roll < share:
            return kind
        roll -= share
    return "fresh"


def _apply_kind(kind: str, fields: dict, now, interval, rng: random.Random) -> None:
    if kind == "stale":
        old = now - interval * rng.uniform(3, 50)
        fields.update(last_attempt_at=old, last_success_at=old, data_fetched_at=old)
    elif kind == "failed":
        fields.update(last_attempt_at=now - timedelta(seconds=5), last_error="timeout",
                      last_error_kind="timeout", consecutive_failures=2)  # fmt: skip
    elif kind == "never":
        fields.update(last_attempt_at=None, last_success_at=None, data_fetched_at=None,
                      worst_status=-1, worst_status_since=None)  # fmt: skip
    elif kind == "throttled":
        fields.update(throttled_until=now + timedelta(minutes=rng.uniform(5, 60)))
    elif kind == "paused":
        fields.update(paused_until=now + timedelta(minutes=rng.uniform(5, 60)),
                      consecutive_failures=5, breaker_trips=1,
                      last_attempt_at=now - timedelta(seconds=30), last_error="HTTP 500",
                      last_error_kind="server")  # fmt: skip
    elif kind == "refreshing":
        fields.update(lease_until=now + timedelta(minutes=5), lease_token="bench")  # noqa: S106


def _groups(customers, plans, now, rng: random.Random):
    from portals.models import MonitorGroup

    for customer, statuses in zip(customers, plans, strict=True):
        for g, status in enumerate([*statuses, 1]):
            monitors = rng.randint(1, 40)
            yield MonitorGroup(
                customer=customer,
                group_id=f"{customer.pk}00{g:03d}",
                name=rng.choice(GROUP_NAMES) + ("" if g < len(statuses) else " - sub"),
                status=status,
                monitors=monitors,
                error_monitors=0 if status in (1, 5, 7, 9) else rng.randint(1, monitors),
                top_group=g < len(statuses),
                status_since=now - timedelta(minutes=rng.uniform(1, 5000)),
                updated_at=now,
            )


GROUP_NAMES = (
    "Web servers", "Mail", "VPN", "Databases", "Firewalls", "Backups", "Office 365", "DNS",
    "Printers", "Wi-Fi", "File shares", "ERP", "Website", "Shop", "API", "Switches", "Hypervisors",
    "Domain controllers", "Remote desktop", "Phones",
)  # fmt: skip


def _tokens(customers, states, rng: random.Random):
    from tokens.models import Credential, CredentialKind, CredentialOrigin, CredentialState

    for customer in customers:
        if customer.auth_generation == "oauth":
            continue
        state = CredentialState.ACTIVE
        if customer.last_error == "" and rng.random() < 0.03:
            state = CredentialState.INVALID
        if rng.random() < 0.02:
            continue  # no credential
        yield Credential(
            kind=CredentialKind.PORTAL_AUTHTOKEN, customer=customer,
            secret_ciphertext=FAKE_CIPHERTEXT, secret_last4=f"{customer.pk % 10000:04d}",
            state=state,
            origin=CredentialOrigin.IMPORTED,
        )  # fmt: skip


def _history(customers, plans, now, rng: random.Random):
    from portals.models import StatusChange

    for customer, statuses in zip(customers, plans, strict=True):
        at = now - timedelta(hours=24)
        for _ in range(HISTORY):
            at += timedelta(minutes=rng.uniform(10, 59))
            g = rng.randrange(max(1, len(statuses)))
            yield StatusChange(
                customer=customer, group_id=f"{customer.pk}00{g:03d}", group_name="Group",
                from_status=rng.choice(GROUP_STATUSES), to_status=rng.choice(GROUP_STATUSES),
                at=min(at, now),
            )  # fmt: skip


# --- measuring -----------------------------------------------------------------------------------


def login_client():
    from django.contrib.auth import get_user_model
    from django.test import Client

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench").first()
    if user is None:
        user = user_model.objects.create_superuser("bench", password=PASSWORD)
    client = Client(SERVER_NAME="localhost", HTTP_ACCEPT_ENCODING="gzip")
    client.force_login(user)
    return client


def _forget_rows() -> None:
    """Empty the in-process cache of rendered rows, if the grid has one."""
    from portals import queries

    forget = getattr(queries, "forget_rendered_rows", None)
    if forget:
        forget()


def measure(
    client, url: str, extra: dict, *, cold=False, version=False, churn=0, n=REQUESTS
) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    headers = dict(extra)
    if version:
        # The version the page holds now: what app.js sends with every poll.
        first = client.get(url, **extra)
        held = first.get("X-Grid-Version", "")
        if held:
            headers["HTTP_X_GRID_VERSION"] = held
    for _ in range(WARMUP):
        client.get(url, **headers)
    timings, cpu, statuses = [], [], set()
    response = None
    for i in range(n):
        if cold:
            _forget_rows()
        if churn:
            _refreshed(churn, i)
        start, start_cpu = time.perf_counter(), time.process_time()
        response = client.get(url, **headers)
        timings.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        statuses.add(response.status_code)
        if version and response.get("X-Grid-Version"):
            headers["HTTP_X_GRID_VERSION"] = response["X-Grid-Version"]
    with CaptureQueriesContext(connection) as ctx:
        client.get(url, **headers)
    body = response.content
    raw = gzip.decompress(body) if response.get("Content-Encoding") == "gzip" else body
    timings.sort()
    return {
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(timings[max(0, int(len(timings) * 0.95 + 0.5) - 1)], 1),
        "max_ms": round(timings[-1], 1),
        "cpu_p50_ms": round(statistics.median(cpu), 1),
        "queries": len(ctx.captured_queries),
        "bytes": len(body),
        "raw_bytes": len(raw),
        "status": sorted(statuses),
    }


def _refreshed(count: int, i: int) -> None:
    """`count` customers' data just fetched (one UPDATE, untimed), as between two polls while
    a refresh round is spread over the interval."""
    from django.utils import timezone

    from portals.models import Customer

    ids = Customer.objects.order_by("pk").values_list("pk", flat=True)
    first = (i * count) % max(1, len(ids) - count)
    chosen = list(ids[first : first + count])
    now = timezone.now()
    Customer.objects.filter(pk__in=chosen).update(
        data_fetched_at=now, last_success_at=now, last_attempt_at=now, last_error=""
    )


def endpoints(n: int = 1000) -> dict:
    # A round of N customers spread over half of a 300 s interval: N/150 a second, N/30 per 5 s
    # poll.
    churn = max(1, n // 30)
    return {
        "page": ("/", {}, {}),
        "partial": ("/grid/rows/", HX, {}),
        "unchanged": ("/grid/rows/", HX, {"version": True}),
        "changed": ("/grid/rows/", HX, {"version": True, "churn": churn}),
        "json": ("/grid.json", {}, {}),
        "cold": ("/grid/rows/", HX, {"cold": True}),
    }


def run_size(n: int, groups: int) -> dict:
    from portals.models import Customer, MonitorGroup, StatusChange

    clock = time.monotonic()
    empty_database()
    states = seed(n, groups)
    seeded = time.monotonic() - clock
    say(
        f"seeded {Customer.objects.count()} customers, {MonitorGroup.objects.count()} groups, "
        f"{StatusChange.objects.count()} status changes in {seeded:.1f} s: {states}"
    )
    client = login_client()
    figures: dict = {
        "customers": n,
        "groups": groups,
        "seed_s": round(seeded, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    for name, (url, extra, options) in endpoints(n).items():
        result = measure(client, url, extra, **options)
        figures[name] = result
        say(
            f"  {name:9} {url:12} p50 {result['p50_ms']:7.1f} ms  p95 {result['p95_ms']:7.1f} ms"
            f"  max {result['max_ms']:7.1f} ms  cpu {result['cpu_p50_ms']:6.1f} ms"
            f"  queries {result['queries']}"
            f"  bytes {result['bytes']:>9,} (raw {result['raw_bytes']:>10,})"
            f"  HTTP {result['status']}"
        )
    return figures


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", default="1000", help="N, or several: 100,1000,5000")
    parser.add_argument("--groups", type=int, default=10)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = [int(value) for value in str(args.customers).split(",") if value.strip()]
    url = configure()
    prepare_database(url)
    from django.db import connection

    say(f"grid benchmark: {sizes} customers x {args.groups} groups; database {url}")
    figures: dict = {
        "benchmark": "grid",
        "database": connection.vendor,
        "database_url": url,
        "machine": machine(),
        "requests": REQUESTS,
        "sizes": [],
    }
    for n in sizes:
        figures["sizes"].append(run_size(n, args.groups))
    if len(sizes) > 1:
        figures["queries_constant"] = all(
            len({size[name]["queries"] for size in figures["sizes"]}) == 1 for name in endpoints()
        )
        say(f"queries the same at every size: {figures['queries_constant']}")
    emit(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
