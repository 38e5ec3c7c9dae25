"""Helpers for the sync, refresh and Celery tests: simulator control, customers with real
credentials (created through the simulator over HTTP), a test broker, and signal logs."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime

import kombu.pools
import requests
from celery.signals import before_task_publish, task_postrun, task_retry

from tokens.models import CredentialKind

SIM_TIMEOUT = 5


# --- the simulator -------------------------------------------------------------------------------


def sim_get(sim, path: str) -> dict:
    response = requests.get(f"{sim.url}/_sim/{path}", timeout=SIM_TIMEOUT)
    response.raise_for_status()
    return response.json()


def sim_post(sim, path: str, payload: dict | None = None) -> dict:
    response = requests.post(f"{sim.url}/_sim/{path}", json=payload or {}, timeout=SIM_TIMEOUT)
    response.raise_for_status()
    return response.json()


def fault(sim, **spec) -> dict:
    return sim_post(sim, "faults", spec)


def calls(sim, endpoint: str) -> int:
    return sim_get(sim, "counters")["requests"][endpoint]


def sim_customers(sim) -> list[dict]:
    return sim_get(sim, "customers")["customers"]


# --- customers with credentials, the way an operator gets them ------------------------------------


def msp_authtoken_credential(sim):
    from tokens.services import credential_import

    secret = sim_get(sim, "credentials")["msp_authtoken"]
    return credential_import(kind=CredentialKind.MSP_AUTHTOKEN, secret=secret, label="MSP")


def oauth_credential(sim):
    from tokens.services import credential_oauth_connect

    creds = sim_get(sim, "credentials")
    return credential_oauth_connect(
        client_id=creds["client_id"],
        client_secret=creds["client_secret"],
        grant_code=creds["grant_code"],
        label="OAuth",
    )


def legacy_customers(sim, *, count: int | None = None):
    """Sync the simulator's portals with an MSP authtoken and create a portal authtoken for
    the first `count` customers (all by default). Returns those customers, by name order."""
    from portals.models import Customer
    from portals.services import customer_sync
    from tokens.services import credential_create

    customer_sync(credential=msp_authtoken_credential(sim))
    upstream = {c["portal_id"]: c for c in sim_customers(sim)}
    chosen = list(Customer.objects.order_by("pk"))[:count]
    for customer in chosen:
        login = upstream[customer.portal_id]
        credential_create(customer=customer, email=login["email"], password=login["password"])
    return chosen


def oauth_customers(sim):
    from portals.models import Customer
    from portals.services import customer_sync

    credential = oauth_credential(sim)
    customer_sync(credential=credential)
    return list(Customer.objects.order_by("pk"))


def upstream_of(sim, customer) -> dict:
    key = customer.zaaid or customer.portal_id
    return next(c for c in sim_customers(sim) if key in (c["zaaid"], c["portal_id"]))


# --- Celery: a broker of our own, logs of what was published and run ------------------------------


def use_test_broker(app, folder, redis_url: str) -> None:
    """Point the app at Redis (CI) or at a filesystem broker in `folder`, and drop pooled
    connections made with earlier settings."""
    if redis_url:
        app.conf.broker_url = redis_url
    else:
        queue, processed, control = folder / "queue", folder / "processed", folder / "control"
        for path in (queue, processed, control):
            path.mkdir(parents=True, exist_ok=True)
        app.conf.broker_url = "filesystem://"
        app.conf.broker_transport_options = {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "processed_folder": str(processed),
            "control_folder": str(control),
            "store_processed": False,
            "polling_interval": 0.02,
            "drain_timeout": 0.2,
        }
    app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()


def purge(app) -> None:
    with app.connection_for_write() as conn:
        app.control.purge(connection=conn)


class PublishLog:
    """Every task message published while active: name, args, kwargs, headers, when."""

    def __init__(self):
        self.messages: list[dict] = []
        self._lock = threading.Lock()

    def _record(self, sender=None, body=None, headers=None, **_):
        args, kwargs = (body[0], body[1]) if isinstance(body, (list, tuple)) else ((), {})
        with self._lock:
            self.messages.append(
                {
                    "task": sender,
                    "args": list(args),
                    "kwargs": dict(kwargs),
                    "headers": dict(headers or {}),
                    "at": datetime.now(UTC),
                }
            )

    def __enter__(self):
        before_task_publish.connect(self._record, weak=False)
        return self

    def __exit__(self, *exc):
        before_task_publish.disconnect(self._record)

    def named(self, task: str) -> list[dict]:
        with self._lock:
            return [m for m in self.messages if m["task"] == task]

    @staticmethod
    def delay_of(message: dict) -> float:
        """Seconds between publishing and the message's ETA (0 without one)."""
        eta = message["headers"].get("eta")
        if not eta:
            return 0.0
        return (datetime.fromisoformat(eta) - message["at"]).total_seconds()


class RunLog:
    """Every task run that ended in the worker (task name, args, state, return value), and the
    countdown of every retry the worker asked for."""

    def __init__(self):
        self.runs: list[tuple[str, list, str, object]] = []
        self.retry_countdowns: list[float] = []
        self._lock = threading.Lock()

    def _record(self, sender=None, args=None, state=None, retval=None, **_):
        with self._lock:
            name = sender.name if sender else ""
            self.runs.append((name, list(args or ()), state or "", retval))

    def _retry(self, request=None, reason=None, **_):
        with self._lock:
            self.retry_countdowns.append(float(getattr(reason, "when", None) or 0))

    def __enter__(self):
        task_postrun.connect(self._record, weak=False)
        task_retry.connect(self._retry, weak=False)
        return self

    def __exit__(self, *exc):
        task_postrun.disconnect(self._record)
        task_retry.disconnect(self._retry)

    def count(self, task: str, state: str | None = None) -> int:
        with self._lock:
            return sum(1 for run in self.runs if run[0] == task and state in (None, run[2]))

    def retvals(self, task: str) -> list:
        with self._lock:
            return [run[3] for run in self.runs if run[0] == task and run[2] == "SUCCESS"]


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.05, what: str = "") -> None:
    """Poll until `predicate()` is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(interval)
    if predicate():
        return
    raise AssertionError(f"timed out waiting for {what or predicate}")


def isolate_file_cache(settings, folder) -> None:
    """Without Redis, give this test a file cache of its own: var/cache is shared with the demo
    and with any other test run on this machine, whose cache.clear() would reset our counters."""
    if settings.REDIS_URL:
        return
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(folder / "cache"),
        }
    }


@contextlib.contextmanager
def thread_worker(app, concurrency: int = 8):
    """A real Celery worker in this process (thread pool) on `app`'s broker, while inside."""
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        app,
        pool="threads",
        concurrency=concurrency,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=15,
    ):
        yield


def grid_snapshot(client) -> dict:
    """What the grid (/grid.json) shows of each customer, without the clock (ages, times)."""
    rows = client.get("/grid.json").json()["customers"]
    timeless = ("data_age_seconds", "data_fetched_at", "last_success_at", "url", "id")
    return {
        row["name"]: {
            **{k: v for k, v in row.items() if k not in timeless and k != "groups"},
            "groups": [{k: v for k, v in g.items() if "since" not in k} for g in row["groups"]],
        }
        for row in rows
    }
