"""Soak: the real stack under a rotating mixture of upstream faults, then the invariants (issue 8).

    .venv/bin/python benchmarks/soak.py --minutes 10 [--customers 20] [--interval 15] \\
        [--auth both|legacy|oauth] [--concurrency 8] [--seed 3]

Starts the simulator (its own process, no drift), a Celery worker and Celery beat (subprocesses,
thread pool, DEBUG logs captured to var/soak/logs/), on PostgreSQL and Redis when DATABASE_URL /
REDIS_URL are set (a database `msp_soak`, created, migrated and emptied here, and Redis db 14,
emptied here; never the tests' ones), else on SQLite and the filesystem broker under var/soak/.
Customers get real credentials through the vault: legacy (MSP authtoken, one portal authtoken
each, made over HTTP) and OAuth (one identity); `--auth both` has every simulator customer
twice, once per generation.

For M minutes it rotates faults every `--fault-period` seconds (two at a time by default):
latency spikes, 5xx (counted and random rates), 429 with Retry-After, the throttle rule (calls
per window, then 429 for a lock period), malformed JSON, HTML error pages, hangs (longer than
the read timeout), connection resets, invalid legacy tokens (the operator replaces the token
when the fault is lifted, as in real life) and expired OAuth access tokens. Meanwhile it drives
status changes through `/_sim/status` (each value held for at least 2.5 intervals) and watches
the database twice a second. Then it lifts every fault and checks:

- fresh: every customer has fresh data again within two intervals;
- groups_kept: no customer ever lost a group while failing (upstream groups never change);
- status_changes: every change driven upstream that a successful refresh could see is recorded
  exactly once, nothing is recorded that was not driven, no identical change twice in a row,
  and the final statuses are upstream's;
- no_duplicates: groups as upstream has them, once each;
- leases: no lease ever longer than its timeout, none left once the worker stopped;
- budget: per customer and status endpoint, never more calls in any budget window than the
  budget allows (simulator counters sampled every 2 s; windows spanning a token replacement,
  which starts a new budget, are left out);
- no_secret_in_logs: none of the run's secrets (MSP authtoken, portal authtokens, portal
  passwords, OAuth client secret and grant code, refresh token, access token), raw, base64 or
  URL-encoded, in any worker or beat log line (DEBUG);
- memory: worker RSS at the end within 25 % (or 25 MB) of its level after the first third;
- worker_survived, rounds_delivered: the worker never stopped with "Unrecoverable error", and
  every round beat sent reached it (a round lost in the broker skips every customer once).

The Redis db (`--redis-db`, 14 by default) must have no other client: another worker there
would take the soak's messages (the script stops instead).

Prints the figures, then one JSON line; exits 1 when an invariant fails."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import random
import re
import secrets
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.resilience_support import (  # noqa: E402
    BIN,
    Proc,
    Stack,
    free_port,
    rss_kb,
    wait_until,
)

SOAK_VAR = ROOT / "var" / "soak"
SOAK_DATABASE = "msp_soak"
SOAK_REDIS_DB = 14  # the tests and the demo use 0, the benchmarks 15
STATUS_ENDPOINT = {"legacy": "monitor_groups_status", "oauth": "current_status"}
DRIVEN_STATUSES = (0, 1, 2, 3, 7)
BUDGET, BUDGET_WINDOW = 30, 60


def say(message: str = "") -> None:
    print(message, flush=True)


def now_utc() -> datetime:
    return datetime.now(UTC)


# --- the environment -----------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--customers", type=int, default=20, help="simulator customers")
    parser.add_argument("--interval", type=int, default=15, help="REFRESH_INTERVAL, seconds")
    parser.add_argument("--auth", choices=("both", "legacy", "oauth"), default="both")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--fault-period", type=float, default=20.0, help="seconds per rotation")
    parser.add_argument("--faults-at-once", type=int, default=2)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--redis-db", type=int, default=SOAK_REDIS_DB, help="with REDIS_URL")
    return parser.parse_args(argv)


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def configure(args: argparse.Namespace, sim_url: str) -> dict[str, str]:
    """The environment of this process and of the worker and beat (set before Django loads)."""
    from cryptography.fernet import Fernet

    interval = args.interval
    values = {
        "DJANGO_SETTINGS_MODULE": "msp_dashboard.settings",
        "VAR_DIR": str(SOAK_VAR),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SITE24X7_API_URL": sim_url,
        "SITE24X7_ACCOUNTS_URL": sim_url,
        "REFRESH_INTERVAL": str(interval),
        "SITE24X7_CONNECT_TIMEOUT": "2",
        "SITE24X7_READ_TIMEOUT": "5",
        "REFRESH_BACKOFF_BASE": "1",
        "REFRESH_BACKOFF_MAX": str(max(2, interval // 2)),
        # An open breaker pauses a customer for half an interval, so a customer that failed
        # until the faults are lifted is probed again within the two intervals allowed.
        "BREAKER_PAUSE": str(max(1, interval // 2)),
        "BREAKER_PAUSE_MAX": str(max(1, interval // 2)),
        "SITE24X7_CALL_BUDGET": str(BUDGET),
        "SITE24X7_CALL_BUDGET_WINDOW": str(BUDGET_WINDOW),
        "TASK_TIME_LIMIT": "20",
        "TASK_SOFT_TIME_LIMIT": "15",
        "SYNC_INTERVAL": "86400",
        "LOG_LEVEL": "DEBUG",
    }
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith("postgres"):
        values["DATABASE_URL"] = _with_path(database_url, f"/{SOAK_DATABASE}")
    else:
        values["DATABASE_URL"] = f"sqlite:///{SOAK_VAR / 'soak.sqlite3'}"
    redis_url = os.environ.get("REDIS_URL", "")
    values["REDIS_URL"] = _with_path(redis_url, f"/{args.redis_db}") if redis_url else ""
    os.environ.update(values)
    return values


def prepare_storage(values: dict[str, str]) -> None:
    """A new, migrated, empty soak database; an empty soak Redis database."""
    url = values["DATABASE_URL"]
    if url.startswith("postgres"):
        import psycopg

        parts = urlsplit(url)
        admin = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
        with psycopg.connect(admin, autocommit=True) as db:
            found = db.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (SOAK_DATABASE,)
            ).fetchone()
            if not found:
                db.execute(f'CREATE DATABASE "{SOAK_DATABASE}"')
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{SOAK_VAR / 'soak.sqlite3'}{suffix}").unlink(missing_ok=True)
    if values["REDIS_URL"]:
        import redis

        client = redis.Redis.from_url(values["REDIS_URL"])
        db = client.connection_pool.connection_kwargs.get("db", 0)
        if db == 0:
            raise SystemExit("refusing to flush Redis db 0 (the tests' and the demo's)")
        others = [c for c in client.client_list() if int(c.get("db", -1)) == db]
        if len(others) > 1:  # this connection is one of them
            # Another worker on the same db would take our messages (and we its).
            raise SystemExit(f"another process uses Redis db {db}: pick one with --redis-db")
        client.flushdb()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
    logging.getLogger().setLevel(logging.WARNING)  # DEBUG is for the worker's and beat's logs


# --- the simulator -------------------------------------------------------------------------------


class SimProcess:
    def __init__(self, customers: int, seed: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            str(BIN / "python"), "-m", "site24x7_simulator", "--port", str(self.port),
            "--customers", str(customers), "--seed", str(seed), "--drift-seconds", "0",
        ]  # fmt: skip
        self.proc = Proc("simulator", argv, env=dict(os.environ), log_path=SOAK_VAR / "logs" /
                         "simulator.log").start()  # fmt: skip
        self.proc.wait_for_log("simulator on", timeout=30)
        self.session = requests.Session()

    def get(self, path: str) -> dict:
        response = self.session.get(f"{self.url}/_sim/{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, payload: dict | None = None) -> dict:
        response = self.session.post(f"{self.url}/_sim/{path}", json=payload or {}, timeout=30)
        response.raise_for_status()
        return response.json()


# --- customers and the secrets of the run --------------------------------------------------------


class World:
    """What the soak knows: simulator customers, dashboard customers, secrets, operator acts."""

    def __init__(self, sim: SimProcess, auth: str) -> None:
        self.sim, self.auth = sim, auth
        self.upstream = sim.get("customers")["customers"]
        self.by_portal = {u["portal_id"]: u for u in self.upstream}
        self.by_zaaid = {u["zaaid"]: u for u in self.upstream}
        self.secrets: dict[str, set[str]] = defaultdict(set)
        self.replaced: dict[str, list[float]] = defaultdict(list)  # zaaid -> token replaced at
        self.customers: dict[int, dict] = {}  # pk -> {zaaid, generation, name, groups}

    def set_up(self) -> None:
        from portals.models import Customer
        from portals.services import customer_sync
        from tokens.models import CredentialKind
        from tokens.services import credential_create, credential_import, credential_oauth_connect

        creds = self.sim.get("credentials")
        self.secrets["msp_authtoken"].add(creds["msp_authtoken"])
        self.secrets["client_secret"].add(creds["client_secret"])
        self.secrets["grant_code"].add(creds["grant_code"])
        for upstream in self.upstream:
            self.secrets["password"].add(upstream["password"])
        if self.auth in ("both", "legacy"):
            msp = credential_import(
                kind=CredentialKind.MSP_AUTHTOKEN, secret=creds["msp_authtoken"], label="MSP"
            )
            customer_sync(credential=msp)
            for customer in Customer.objects.filter(auth_generation="legacy"):
                login = self.by_portal[customer.portal_id]
                credential_create(
                    customer=customer, email=login["email"], password=login["password"]
                )
        if self.auth in ("both", "oauth"):
            identity = credential_oauth_connect(
                client_id=creds["client_id"], client_secret=creds["client_secret"],
                grant_code=creds["grant_code"], label="OAuth",
            )  # fmt: skip
            customer_sync(credential=identity)
        for customer in Customer.objects.filter(is_active=True):
            upstream = (
                self.by_portal[customer.portal_id]
                if customer.auth_generation == "legacy"
                else self.by_zaaid[customer.zaaid]
            )
            self.customers[customer.pk] = {
                "zaaid": upstream["zaaid"],
                "generation": customer.auth_generation,
                "name": customer.name,
                "groups": len(upstream["groups"]),
            }
        self.collect_secrets()

    def collect_secrets(self) -> None:
        """Every stored secret, decrypted (before a revoke destroys it), and the access token."""
        from tokens.models import Credential, CredentialKind
        from tokens.services import credential_client_secret, credential_secret

        for credential in Credential.objects.all():
            try:
                self.secrets[f"stored_{credential.kind}"].add(credential_secret(credential))
                if credential.kind == CredentialKind.OAUTH:
                    self.secrets["client_secret"].add(credential_client_secret(credential))
            except Exception:  # noqa: S112 - revoked: no ciphertext left
                continue
        for tokens in self.sim.get("tokens")["tokens"].values():
            self.secrets["portal_authtoken"].update(tokens)
        self._access_token()

    def _access_token(self) -> None:
        from tokens.models import Credential, CredentialKind, CredentialState
        from tokens.services import oauth_access_token

        identity = Credential.objects.filter(
            kind=CredentialKind.OAUTH, state=CredentialState.ACTIVE
        ).first()
        if identity is not None:
            with contextlib.suppress(Exception):  # a figure, not the soak's business
                self.secrets["access_token"].add(oauth_access_token(credential=identity))

    def replace_invalid_tokens(self) -> int:
        """The operator: revoke each rejected portal authtoken and create a new one."""
        from portals.models import Customer
        from tokens.models import Credential, CredentialKind, CredentialState
        from tokens.services import credential_create, credential_forget, credential_revoke

        self.collect_secrets()
        replaced = 0
        invalid = Credential.objects.filter(
            kind=CredentialKind.PORTAL_AUTHTOKEN, state=CredentialState.INVALID
        ).select_related("customer")
        for credential in invalid:
            customer = credential.customer
            try:
                credential_revoke(credential=credential)
            except Exception:  # not known upstream: forget it here
                credential_forget(credential=credential)
            live = Credential.objects.filter(customer=customer, state=CredentialState.ACTIVE)
            if not live.exists():
                login = self.by_portal[customer.portal_id]
                credential_create(
                    customer=Customer.objects.get(pk=customer.pk),
                    email=login["email"],
                    password=login["password"],
                )
            self.replaced[self.by_portal[customer.portal_id]["zaaid"]].append(time.time())
            replaced += 1
        self.collect_secrets()
        return replaced


# --- faults --------------------------------------------------------------------------------------


class Faults:
    """Rotating faults: every kind in turn (shuffled per cycle), on random customers."""

    def __init__(self, world: World, args: argparse.Namespace) -> None:
        self.world, self.args = world, args
        self.rng = random.Random(args.seed)
        self.injected: Counter = Counter()
        self.queue: list[str] = []
        self.expiries = 0

    def kinds(self) -> list[str]:
        kinds = ["latency", "latency_all", "5xx", "error_rate", "429", "throttle", "malformed",
                 "html", "hang", "reset"]  # fmt: skip
        if self.world.auth in ("both", "legacy"):
            kinds.append("invalid_token")
        if self.world.auth in ("both", "oauth"):
            kinds.append("token_expiry")
        return kinds

    def rotate(self) -> list[str]:
        sim = self.world.sim
        sim.post("faults/clear")
        self.world.replace_invalid_tokens()
        chosen = []
        for _ in range(self.args.faults_at_once):
            if not self.queue:
                self.queue = self.kinds()
                self.rng.shuffle(self.queue)
            kind = self.queue.pop()
            if kind == "token_expiry":
                if self.expiries >= 4:  # Zoho mints 10 per 10 minutes: stay well inside
                    continue
                self.expiries += 1
                sim.post("oauth", {"expire_access_tokens": True})
            else:
                sim.post("faults", self.spec(kind))
            self.injected[kind] += 1
            chosen.append(kind)
        return chosen

    def spec(self, kind: str) -> dict:
        rng, interval = self.rng, self.args.interval
        customer = rng.choice(self.world.upstream)["zaaid"]
        lock = max(1, interval // 2)
        return {
            "latency": {"kind": "latency", "latency_ms": rng.choice((1500, 2500, 3500)),
                        "customer": customer},
            "latency_all": {"kind": "latency", "latency_ms": 800, "jitter_ms": 700},
            "5xx": {"kind": "status", "http_status": rng.choice((500, 502, 503)),
                    "customer": customer, "count": rng.randint(2, 6)},
            "error_rate": {"kind": "error_rate", "rate": 0.3, "http_status": 503},
            "429": {"kind": "status", "http_status": 429, "retry_after": rng.randint(1, lock),
                    "customer": customer, "count": 3},
            "throttle": {"kind": "throttle", "calls": 2, "window_s": 2 * interval,
                         "lock_s": lock},
            "malformed": {"kind": "malformed", "customer": customer,
                          "count": rng.randint(1, 3)},
            "html": {"kind": "html", "customer": customer, "count": 2},
            "hang": {"kind": "hang", "customer": customer, "hang_s": 30},
            "reset": {"kind": "reset", "customer": customer, "count": 3},
            "invalid_token": {"kind": "invalid_token", "customer": customer,
                              "endpoint": "monitor_groups_status"},
        }[kind]  # fmt: skip


# --- driven status changes -----------------------------------------------------------------------


class Driver:
    """Changes one top group's status upstream every few seconds, each value held for at least
    2.5 intervals; remembers every value with its time."""

    def __init__(self, world: World, args: argparse.Namespace) -> None:
        self.world, self.rng = world, random.Random(args.seed + 1)
        self.hold = 2.5 * args.interval
        self.history: dict[tuple[str, str], list[tuple[float, int]]] = {}
        start = time.time()
        for upstream in world.upstream:
            for group in upstream["groups"]:
                self.history[(upstream["zaaid"], group["group_id"])] = [(start, group["status"])]
        self.tops = [(u["zaaid"], g["group_id"]) for u in world.upstream for g in u["groups"]
                     if g["top_group"]]  # fmt: skip

    def drive(self) -> None:
        now = time.time()
        ready = [key for key in self.tops if now - self.history[key][-1][0] >= self.hold]
        if not ready:
            return
        zaaid, group_id = key = self.rng.choice(ready)
        current = self.history[key][-1][1]
        status = self.rng.choice([s for s in DRIVEN_STATUSES if s != current])
        self.world.sim.post("status", {"customer": zaaid, "group_id": group_id, "status": status})
        self.history[key].append((time.time(), status))

    @property
    def changes(self) -> int:
        return sum(len(values) - 1 for values in self.history.values())


# --- the watcher ---------------------------------------------------------------------------------


class Watcher(threading.Thread):
    """Twice a second: every customer's fetch times, group counts, leases and data age; every
    2 s the simulator's counters; every 10 s the worker's memory."""

    def __init__(self, world: World, worker: Proc, lease_timeout: float) -> None:
        super().__init__(daemon=True, name="soak-watcher")
        self.world, self.worker, self.lease_timeout = world, worker, lease_timeout
        self.stop_event = threading.Event()
        self.fetched: dict[int, set[datetime]] = defaultdict(set)
        self.min_groups: dict[int, int] = {}
        self.lease_violations = 0
        self.max_age = 0.0
        self.counters: list[tuple[float, dict]] = []
        self.rss: list[tuple[float, int]] = []
        self.errors = 0

    def run(self) -> None:
        from django.db import connections

        tick = 0
        try:
            while not self.stop_event.wait(0.5):
                try:
                    self.sample_database()
                    if tick % 4 == 0:
                        url = f"{self.world.sim.url}/_sim/counters"
                        by_customer = requests.get(url, timeout=10).json()["by_customer"]
                        self.counters.append((time.time(), by_customer))
                    if tick % 20 == 0:
                        self.rss.append((time.time(), rss_kb(self.worker.pid)))
                except Exception:  # a missed sample, counted
                    self.errors += 1
                tick += 1
        finally:
            connections.close_all()

    def sample_database(self) -> None:
        from django.db.models import Count

        from portals.models import Customer

        now = now_utc()
        rows = (
            Customer.objects.filter(pk__in=list(self.world.customers))
            .annotate(n=Count("groups"))
            .values_list("pk", "data_fetched_at", "last_success_at", "lease_until", "n")
        )
        for pk, fetched, success, lease, groups in rows:
            if fetched:
                self.fetched[pk].add(fetched)
                self.min_groups[pk] = min(self.min_groups.get(pk, groups), groups)
            if lease and (lease - now).total_seconds() > self.lease_timeout + 1:
                self.lease_violations += 1
            if success:
                self.max_age = max(self.max_age, (now - success).total_seconds())


# --- checks --------------------------------------------------------------------------------------


def check_status_changes(world: World, driver: Driver, watcher: Watcher) -> dict:
    """Driven values against recorded changes, per dashboard customer and group."""
    from portals.models import StatusChange

    recorded_rows = defaultdict(list)
    for change in StatusChange.objects.exclude(group_id="").order_by("at", "id"):
        recorded_rows[(change.customer_id, change.group_id)].append(change)
    observable = recorded = missed = spurious = repeated = 0
    for pk, info in world.customers.items():
        fetches = sorted(f.timestamp() for f in watcher.fetched.get(pk, ()))
        for (zaaid, group_id), values in driver.history.items():
            if zaaid != info["zaaid"] or len(values) < 2:
                continue
            rows = recorded_rows.get((pk, group_id), [])
            seen = [rows[0].to_status] if rows else []
            for previous, row in zip(rows, rows[1:], strict=False):
                if row.from_status != previous.to_status or row.to_status == previous.to_status:
                    repeated += 1
                seen.append(row.to_status)
            if not _is_subsequence(seen, [status for _, status in values]):
                spurious += 1
            for index in range(1, len(values)):
                start = values[index][0]
                end = values[index + 1][0] if index + 1 < len(values) else float("inf")
                if not any(start + 0.5 < f and f + 6 < end for f in fetches):
                    continue  # no successful refresh could have seen this value
                observable += 1
                if values[index][1] in seen:
                    recorded += 1
                else:
                    missed += 1
    return {"observable": observable, "recorded": recorded, "missed": missed,
            "spurious": spurious, "repeated": repeated}  # fmt: skip


def _is_subsequence(seen: list[int], driven: list[int]) -> bool:
    """`seen` (recorded values, collapsed) appears in order in `driven` (values in time)."""
    position = 0
    for value in seen:
        while position < len(driven) and driven[position] != value:
            position += 1
        if position == len(driven):
            return False
    return True


def check_final_state(world: World) -> dict:
    """Groups as upstream has them now, once each, with upstream's status."""
    from portals.models import MonitorGroup

    upstream = {u["zaaid"]: {g["group_id"]: g["status"] for g in u["groups"]}
                for u in world.sim.get("customers")["customers"]}  # fmt: skip
    wrong_groups = wrong_status = 0
    for pk, info in world.customers.items():
        stored = list(MonitorGroup.objects.filter(customer_id=pk).values_list("group_id", "status"))
        expected = upstream[info["zaaid"]]
        if sorted(g for g, _ in stored) != sorted(expected):
            wrong_groups += 1
        wrong_status += sum(1 for g, status in stored if expected.get(g) != status)
    return {"customers_with_wrong_groups": wrong_groups, "groups_with_wrong_status": wrong_status}


def check_budget(world: World, watcher: Watcher) -> dict:
    """Most calls per customer and status endpoint within any span of BUDGET_WINDOW seconds
    between two counter samples (a lower bound of the true maximum, never an overestimate)."""
    worst = 0
    for info in world.customers.values():
        endpoint, zaaid = STATUS_ENDPOINT[info["generation"]], info["zaaid"]
        series = [(t, c.get(zaaid, {}).get(endpoint, 0)) for t, c in watcher.counters]
        replaced = world.replaced.get(zaaid, []) if info["generation"] == "legacy" else []
        for i, (t_i, c_i) in enumerate(series):
            for t_j, c_j in series[i + 1 :]:
                if t_j - t_i > BUDGET_WINDOW:
                    break
                if any(t_i <= r <= t_j for r in replaced):
                    continue  # a new token, a new budget
                worst = max(worst, c_j - c_i)
    return {"max_calls_in_a_window": worst, "budget": BUDGET, "window_s": BUDGET_WINDOW}


def secret_forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        quote(secret, safe=""),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


def check_logs(world: World, logs: list[Path]) -> dict:
    found: Counter = Counter()
    texts = {path.name: path.read_text(errors="replace") for path in logs if path.exists()}
    for kind, values in world.secrets.items():
        for value in values:
            if len(value) < 8:
                continue
            for form in secret_forms(value):
                for name, text in texts.items():
                    if form in text:
                        found[f"{kind} in {name}"] += 1  # never the value itself
    size = sum(len(text) for text in texts.values())
    secrets_checked = sum(len(v) for v in world.secrets.values())
    return {"leaks": dict(found), "log_bytes": size, "secrets_checked": secrets_checked}


def log_figures(worker_log: str, beat_log: str) -> dict:
    sent = set(re.findall(r"portals\.tasks\.refresh_due sent\. id->([0-9a-f-]+)", beat_log))
    seen = set(re.findall(r"portals\.tasks\.refresh_due\[([0-9a-f-]+)\]", worker_log))
    attempts = len(re.findall(r"refresh: customer \d+ (?:ok|ignored|failed)", worker_log))
    failed = Counter(re.findall(r"refresh: customer \d+ failed \((\w+)\)", worker_log))
    return {
        "rounds": beat_log.count("Sending due task refresh-due"),
        "rounds_enqueuing": len(re.findall(r"refresh round \w+: \d+ customers", worker_log)),
        "attempts": attempts,
        "retries": len(re.findall(r"failed \(\w+\), retry in", worker_log)),
        "failures_by_kind": dict(failed),
        "unrecoverable_errors": worker_log.count("Unrecoverable error"),
        "rounds_lost": len(sent - seen),  # sent by beat, never seen by the worker
    }


# --- the run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    SOAK_VAR.mkdir(parents=True, exist_ok=True)
    for old in (SOAK_VAR / "logs").glob("*.log"):
        old.unlink()
    sim = SimProcess(args.customers, args.seed)
    stack = None
    try:
        values = configure(args, sim.url)
        prepare_storage(values)
        services = {"postgresql": values["DATABASE_URL"].startswith("postgres"),
                    "redis": bool(values["REDIS_URL"])}  # fmt: skip
        say(f"soak: {args.minutes:g} min, {args.customers} simulator customers ({args.auth}), "
            f"interval {args.interval} s; {services}")  # fmt: skip
        world = World(sim, args.auth)
        world.set_up()
        say(f"setup: {len(world.customers)} dashboard customers with credentials")
        stack = Stack(
            SOAK_VAR, database_url=values["DATABASE_URL"], sim_url=sim.url,
            redis_url=values["REDIS_URL"], secret_key=values["SECRET_KEY"],
            encryption_keys=[values["FIELD_ENCRYPTION_KEYS"]], var_dir=SOAK_VAR,
        )  # fmt: skip
        return soak(args, world, stack, services)
    finally:
        if stack:
            stack.stop_all()
        sim.proc.stop()


def soak(args, world: World, stack: Stack, services: dict) -> dict:
    from django.conf import settings

    from portals.models import Customer
    from portals.services import lease_timeout
    from portals.tasks import refresh_due

    interval = args.interval
    worker = stack.worker(concurrency=args.concurrency, loglevel="DEBUG")
    beat = stack.beat(loglevel="DEBUG")
    watcher = Watcher(world, worker, lease_timeout().total_seconds())
    watcher.start()
    refresh_due.delay()  # the first round now, not one interval after beat started
    pks = list(world.customers)
    first = Customer.objects.filter(pk__in=pks, data_fetched_at__isnull=False)
    wait_until(lambda: first.count() == len(pks), timeout=4 * interval, what="first refreshes")
    say(f"every customer fresh; faults for {args.minutes:g} min")
    faults, driver = Faults(world, args), Driver(world, args)
    watcher.max_age = 0.0
    started = time.monotonic()
    next_fault = next_drive = next_line = started
    while time.monotonic() - started < args.minutes * 60:
        clock = time.monotonic()
        if clock >= next_fault:
            chosen = faults.rotate()
            next_fault = clock + args.fault_period
        if clock >= next_drive:
            driver.drive()
            next_drive = clock + interval / 3
        if clock >= next_line:
            say(f"  {clock - started:5.0f} s: faults {', '.join(chosen)}; "
                f"worker RSS {rss_kb(worker.pid) / 1024:.0f} MB")  # fmt: skip
            next_line = clock + 60
        time.sleep(0.2)
    max_age_under_faults = watcher.max_age

    world.sim.post("faults/clear")
    world.replace_invalid_tokens()
    lifted = now_utc()
    say("faults lifted; waiting for every customer to be fresh again")
    try:
        recovery = wait_until(
            lambda: Customer.objects.filter(pk__in=pks, last_success_at__gt=lifted).count()
            == len(pks), timeout=4 * interval, interval=0.2,
        )  # fmt: skip
    except AssertionError:
        recovery = float("inf")
    stale = list(
        Customer.objects.filter(pk__in=pks)
        .exclude(last_success_at__gt=lifted)
        .values_list("name", "last_error_kind")
    )
    time.sleep(2)
    beat.stop()
    worker.stop(timeout=60)  # warm shutdown: running refreshes finish
    watcher.stop_event.set()
    watcher.join(10)
    world.collect_secrets()

    changes = check_status_changes(world, driver, watcher)
    final = check_final_state(world)
    budget = check_budget(world, watcher)
    logs = check_logs(world, [p.log_path for p in stack.procs if p.name in ("worker", "beat")])
    figures = log_figures(stack.logs("worker"), stack.logs("beat"))
    counters = world.sim.get("counters")
    lost = [pk for pk, info in world.customers.items()
            if watcher.min_groups.get(pk, 0) < info["groups"]]  # fmt: skip
    leases_left = Customer.objects.filter(lease_until__isnull=False).count()
    rss = [kb for _, kb in watcher.rss if kb]
    warm = rss[len(rss) // 3] if rss else 0
    invariants = {
        "fresh": recovery <= 2 * interval,
        "groups_kept": not lost,
        "status_changes": changes["missed"] == changes["spurious"] == changes["repeated"] == 0
        and final["groups_with_wrong_status"] == 0,
        "no_duplicates": final["customers_with_wrong_groups"] == 0,
        "leases": watcher.lease_violations == 0 and leases_left == 0,
        "budget": budget["max_calls_in_a_window"] <= BUDGET,
        "no_secret_in_logs": not logs["leaks"],
        "memory": bool(rss) and rss[-1] <= max(warm * 1.25, warm + 25 * 1024),
        "worker_survived": figures["unrecoverable_errors"] == 0,
        "rounds_delivered": figures["rounds_lost"] == 0,
    }
    calls = counters["requests"]
    return {
        "minutes": args.minutes,
        "interval_s": interval,
        "auth": args.auth,
        "customers": len(world.customers),
        "services": services,
        "rounds": figures["rounds"],
        "rounds_enqueuing": figures["rounds_enqueuing"],
        "rounds_lost": figures["rounds_lost"],
        "faults_injected": dict(faults.injected),
        "faults_total": sum(faults.injected.values()),
        "attempts": figures["attempts"],
        "retries": figures["retries"],
        "failures_by_kind": figures["failures_by_kind"],
        "status_calls": {e: calls[e] for e in STATUS_ENDPOINT.values()},
        "upstream_requests": sum(calls.values()),
        "responses": counters.get("responses", {}),
        "mints": counters.get("mints", 0),
        "tokens_replaced": sum(len(v) for v in world.replaced.values()),
        "max_data_age_s": round(max_age_under_faults, 1),
        "recovery_s": round(recovery, 1) if recovery != float("inf") else None,
        "not_fresh_after_recovery": stale,
        "status_changes_driven": driver.changes,
        "status_changes": changes,
        "final_state": final,
        "budget": budget,
        "lease_violations": watcher.lease_violations,
        "leases_left": leases_left,
        "customers_that_lost_groups": len(lost),
        "secrets": {
            "checked": logs["secrets_checked"],
            "leaks": logs["leaks"],
            "log_mb": round(logs["log_bytes"] / 1e6, 1),
        },  # fmt: skip
        "worker_rss_mb": {
            "warm": round(warm / 1024, 1),
            "peak": round(max(rss, default=0) / 1024, 1),
            "end": round(rss[-1] / 1024, 1) if rss else 0,
        },  # fmt: skip
        "watcher_missed_samples": watcher.errors,
        "call_budget": f"{settings.SITE24X7_CALL_BUDGET}/{settings.SITE24X7_CALL_BUDGET_WINDOW}s",
        "invariants": invariants,
        "ok": all(invariants.values()),
    }


def report(result: dict) -> None:
    say()
    say(
        f"rounds {result['rounds']} ({result['rounds_enqueuing']} enqueued refreshes), "
        f"faults injected {result['faults_total']}: {result['faults_injected']}"
    )
    say(
        f"refresh attempts {result['attempts']}, retries {result['retries']}, failures "
        f"{result['failures_by_kind']}"
    )
    say(
        f"upstream: status calls {result['status_calls']}, all requests "
        f"{result['upstream_requests']}, mints {result['mints']}, tokens replaced "
        f"{result['tokens_replaced']}"
    )
    say(
        f"max data age under faults {result['max_data_age_s']} s; fresh again "
        f"{result['recovery_s']} s after the faults were lifted"
    )
    say(f"status changes driven {result['status_changes_driven']}: {result['status_changes']}")
    say(
        f"budget {result['budget']}; leases: {result['lease_violations']} too long, "
        f"{result['leases_left']} left"
    )
    say(f"secrets: {result['secrets']}; worker RSS MB {result['worker_rss_mb']}")
    for name, passed in result["invariants"].items():
        say(f"  {'PASS' if passed else 'FAIL'}  {name}")
    print(json.dumps(result, sort_keys=True, default=str), flush=True)


def main(argv=None) -> int:
    result = run(parse_args(argv))
    report(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
