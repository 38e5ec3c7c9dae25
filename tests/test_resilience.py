"""Resilience (issue 8): every process can die, every dependency can blink, nothing is lost.

Each test runs the real processes it needs as subprocesses (tests/resilience_support.py), so it
can kill and restart them: Celery workers and beat, a private redis-server, gunicorn, and the
simulator over HTTP. They share the test's own database (DATABASE_URL of the test database) and
a broker: a private Redis in CI (REDIS_URL set), else the filesystem broker under a private
folder. Intervals and limits are seconds, not minutes, so each fault runs in seconds; the
assertions are functional (fresh within one interval, at most one call per round), with margins,
never benchmarks."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from msp_dashboard.celery import app
from portals.models import Customer, MonitorGroup, StatusChange
from portals.services import ROUND_GUARD, customer_refresh, lease_timeout
from portals.tasks import refresh_customer, refresh_due

from .conftest import need
from .refresh_support import fault, legacy_customers, sim_get, sim_post, upstream_of
from .resilience_support import RedisServer, Stack, database_url, free_port, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.slow]

SLACK = 4.0  # seconds: process start-up, polling, a loaded CI machine


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def redis_servers(tmp_path):
    """Start private redis-servers on demand; killed after every process that uses them."""
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        need(RedisServer.available(), "redis-server")
        servers.append(RedisServer(tmp_path / f"redis{len(servers)}").start())
        return servers[-1]

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def private_redis(redis_servers):
    return redis_servers()


@pytest.fixture
def make_stack(transactional_db, settings, tmp_path, redis_servers):
    """`make_stack(sim_url, redis=None, **settings)`: a Stack on the test database, with this
    process's cache (budget counters, locks) pointed at the stack's, and the same settings
    here as in the subprocesses. Broker: `redis` (a RedisServer), else a private Redis in CI
    (REDIS_URL set), else the filesystem broker. Every process is killed at the end, before
    the test database is flushed (this fixture depends on it)."""
    stacks: list[Stack] = []

    def make(sim_url: str, *, redis: RedisServer | None = None, **values) -> Stack:
        if redis is None and os.environ.get("REDIS_URL"):
            redis = redis_servers()
        stack = Stack(
            tmp_path / f"stack{len(stacks)}",
            database_url=database_url(connection.settings_dict),
            sim_url=sim_url,
            redis_url=redis.url if redis else "",
            secret_key=django_settings.SECRET_KEY,
            encryption_keys=list(django_settings.FIELD_ENCRYPTION_KEYS),
            **values,
        )
        stacks.append(stack)
        settings.CACHES = stack.caches()
        settings.VAR_DIR = stack.var_dir
        settings.SITE24X7_API_URL = settings.SITE24X7_ACCOUNTS_URL = sim_url
        for name, value in values.items():
            current = getattr(django_settings, name, None)
            setattr(settings, name, type(current)(value) if current is not None else value)
        return stack

    yield make
    for stack in stacks:
        stack.stop_all()
        for proc in stack.procs:  # shown by pytest when the test failed
            print(f"===== {proc.name} (pid {proc.pid}) =====\n{proc.log()[-20000:]}")


def _reload(customer) -> Customer:
    return Customer.objects.get(pk=customer.pk)


def _calls_by_customer(sim, endpoint: str = "monitor_groups_status") -> dict[str, int]:
    counters = sim_get(sim, "counters")["by_customer"]
    return {zaaid: counts.get(endpoint, 0) for zaaid, counts in counters.items()}


def _zaaid(sim, customer) -> str:
    return upstream_of(sim, customer)["zaaid"]


def _fresh_since(customers, since) -> bool:
    pks = [c.pk for c in customers]
    return Customer.objects.filter(pk__in=pks, data_fetched_at__gt=since).count() == len(pks)


def assert_no_duplicates(sim, customers) -> None:
    """Groups as upstream has them, once each; no status change recorded twice in a row."""
    for customer in customers:
        upstream = {g["group_id"] for g in upstream_of(sim, customer)["groups"]}
        stored = list(MonitorGroup.objects.filter(customer=customer).values_list("group_id"))
        assert sorted(g for (g,) in stored) == sorted(upstream), customer.name
        changes = StatusChange.objects.filter(customer=customer).order_by("at", "id")
        last: dict[str, int | None] = {}
        for change in changes:
            assert change.from_status != change.to_status, change
            assert last.get(change.group_id, "none") != change.to_status, f"repeated {change}"
            last[change.group_id] = change.to_status


# --- REL-09: a worker killed in the middle of a refresh -----------------------------------------


def test_worker_killed_mid_refresh_is_replaced_within_one_interval(simulator, make_stack):
    """Beat runs; SIGKILL the worker while its refresh waits on a 5 s upstream, a few seconds
    before beat's next round; a new worker starts. The customer is refreshed within one
    interval of the restart (the round that finds the dead worker's lease still held defers
    the refresh to the lease's end instead of leaving it to the round after), with no
    duplicate row and no lease older than its timeout. Lease = TASK_TIME_LIMIT + 10 = 12 s,
    shorter than the 15 s interval, as the defaults are (55 s, 300 s)."""
    interval = 15
    stack = make_stack(
        simulator.url, REFRESH_INTERVAL=interval, TASK_TIME_LIMIT=2, TASK_SOFT_TIME_LIMIT=1
    )
    customers = legacy_customers(simulator, count=3)
    slow = customers[0]
    fault(simulator, kind="latency", latency_ms=5000, customer=slow.zaid)
    worker = stack.worker()
    stack.beat()  # its first round comes one interval after it starts: in 15 s
    time.sleep(5)  # the kill comes ~6 s in, the round ~9 s later, while the lease is held
    with stack.broker_for(app):
        refresh_customer.delay(slow.pk)
    wait_until(
        lambda: _calls_by_customer(simulator).get(_zaaid(simulator, slow)) == 1,
        what="the slowed call to reach the simulator",
    )
    time.sleep(0.5)
    worker.kill()
    killed_at = timezone.now()

    held = _reload(slow)
    assert held.data_fetched_at is None and held.lease_until is not None
    assert held.lease_until <= killed_at + lease_timeout()  # a lease ends by itself
    sim_post(simulator, "faults/clear")

    stack.worker()
    restarted = timezone.now()
    took = wait_until(
        lambda: _fresh_since(customers, killed_at), timeout=2 * interval + SLACK,
        what="every customer refreshed after the restart",
    )  # fmt: skip
    assert took <= interval, f"refreshed {took:.1f} s after the restart"

    row = _reload(slow)
    assert row.data_fetched_at >= held.lease_until - timedelta(seconds=1)
    assert row.lease_until is None
    assert not Customer.objects.filter(lease_until__gt=restarted + lease_timeout()).exists()
    assert_no_duplicates(simulator, customers)


# --- REL-10: Redis stopped in the middle of a round, then started -------------------------------


READ_PATHS = ("/", "/grid.json", "/grid/rows/")


def test_redis_outage_pages_render_and_refreshes_resume(
    simulator, make_stack, private_redis, client, django_user_model
):
    interval = 6
    stack = make_stack(simulator.url, redis=private_redis, REFRESH_INTERVAL=interval)
    customers = legacy_customers(simulator, count=4)
    client.force_login(django_user_model.objects.create_superuser("noc", "noc@example.com", "x"))
    fault(simulator, kind="latency", latency_ms=300)  # refreshes in flight when Redis goes
    worker, beat = stack.worker(), stack.beat()
    with stack.broker_for(app):
        refresh_due.delay()
        wait_until(lambda: _fresh_since(customers, timezone.now() - timedelta(hours=1)))
        time.sleep(interval * ROUND_GUARD)  # past the per-round guard
        round_at = timezone.now()
        refresh_due.delay()  # a round: refreshes staggered over half the interval
        wait_until(lambda: Customer.objects.filter(last_success_at__gt=round_at).exists())
        private_redis.kill()  # in the middle of it
        down = time.monotonic()
        while time.monotonic() - down < 10.5:
            for path in READ_PATHS + (f"/customers/{customers[0].pk}/",):
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code)
            for path in (f"/customers/{customers[1].pk}/refresh/", "/customers/sync/"):
                response = client.post(path)  # a message for the operator, never a 500
                assert response.status_code < 500, (path, response.status_code)
            time.sleep(0.5)
        private_redis.start()
    up_at = timezone.now()
    took = wait_until(
        lambda: _fresh_since(customers, up_at), timeout=3 * interval + SLACK,
        what="refreshes after Redis came back",
    )  # fmt: skip
    assert took <= 1.5 * interval + SLACK  # the next round, its stagger, and start-up
    assert worker.alive and beat.alive  # reconnected by themselves
    assert "Unrecoverable error" not in worker.log()
    assert_no_duplicates(simulator, customers)


# --- PostgreSQL connections killed (CONN_HEALTH_CHECKS; the transaction rule) ----------------


def _kill_database_connections() -> int:
    """pg_terminate_backend for every session of the test database but this one (a fresh
    connection of its own): the web's, the worker's and this process's Django connection."""
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def _state(customer) -> tuple:
    """What a refresh writes: the outcome on the row, the groups, the status history."""
    row = Customer.objects.get(pk=customer.pk)
    groups = sorted(
        MonitorGroup.objects.filter(customer=customer).values_list("group_id", "status")
    )
    outcome = (row.data_fetched_at, row.last_success_at, row.worst_status, row.last_error)
    return outcome, groups, StatusChange.objects.filter(customer=customer).count()


def test_postgres_connections_killed_web_and_worker_recover(
    simulator, make_stack, client, django_user_model
):
    """Terminate every PostgreSQL session of the worker and of gunicorn while a slowed refresh
    waits on the upstream: the next request and the next task work (CONN_HEALTH_CHECKS), and
    the interrupted refresh wrote all or nothing (here: nothing; later, all)."""
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    stack = make_stack(
        simulator.url, REFRESH_INTERVAL=15, TASK_TIME_LIMIT=2, TASK_SOFT_TIME_LIMIT=1,
        CONN_MAX_AGE=60,
    )  # fmt: skip
    customers = legacy_customers(simulator, count=4)
    slow, others = customers[0], customers[1:]
    for customer in customers:
        customer_refresh(customer_id=customer.pk)
    group = next(g for g in upstream_of(simulator, slow)["groups"] if g["top_group"])
    new_status = 0 if group["status"] != 0 else 1
    sim_post(simulator, "status", {"customer": slow.zaid, "group_id": group["group_id"],
                                   "status": new_status})  # fmt: skip
    before = _state(slow)
    client.force_login(django_user_model.objects.create_superuser("noc", "noc@example.com", "x"))
    web, web_url = stack.web()
    browser = requests.Session()
    browser.cookies.set("sessionid", client.cookies["sessionid"].value)
    worker = stack.worker(concurrency=2)
    with stack.broker_for(app):
        warm = timezone.now()
        for customer in others:  # every worker thread and the web hold a connection now
            refresh_customer.delay(customer.pk)
        wait_until(lambda: _fresh_since(others, warm))
        assert browser.get(f"{web_url}/", timeout=10).status_code == 200

        fault(simulator, kind="latency", latency_ms=3000, customer=slow.zaid)
        refresh_customer.delay(slow.pk)
        wait_until(lambda: _calls_by_customer(simulator).get(_zaaid(simulator, slow), 0) >= 2)
        assert _kill_database_connections() >= 2  # the worker's and the web's, at least
        killed_at = timezone.now()
        connection.close()  # this process's connection was one of them

        for path in READ_PATHS:  # the very next request works
            response = browser.get(f"{web_url}{path}", timeout=10)
            assert response.status_code == 200, (path, response.status_code)
        for customer in others:  # and the next task
            refresh_customer.delay(customer.pk)
        wait_until(lambda: _fresh_since(others, killed_at), what="the next tasks' refreshes")

        time.sleep(3.5)  # the slowed call has answered; its write met a dead connection
        assert _state(slow) == before  # all old: nothing of the new data, no outcome
        sim_post(simulator, "faults/clear")
        refresh_due.delay()  # the next round: deferred to the end of the dead refresh's lease
        wait_until(lambda: _fresh_since([slow], killed_at), timeout=lease_timeout().seconds + 10)

    outcome, groups, changes = _state(slow)
    assert (group["group_id"], new_status) in groups and changes > before[2]  # all new
    assert outcome[0] > before[0][0]
    assert worker.alive and web.alive
    assert_no_duplicates(simulator, customers)


# --- REL-03: two beats (or a restarted beat) never refresh a customer twice in one round -----


def test_two_beats_and_a_beat_restart_refresh_each_customer_once_per_round(simulator, make_stack):
    interval = 4
    stack = make_stack(simulator.url, REFRESH_INTERVAL=interval)
    customers = legacy_customers(simulator, count=4)
    stack.worker()
    first = stack.beat("beat-a")
    time.sleep(interval / 2)  # half an interval out of phase: the worst case for a guard
    stack.beat("beat-b")
    sim_post(simulator, "counters/reset")
    started = time.monotonic()
    seen: dict[int, set] = {c.pk: set() for c in customers}
    restarted = False
    while time.monotonic() - started < 5 * interval:
        for pk, fetched in Customer.objects.values_list("pk", "data_fetched_at"):
            if pk in seen and fetched:
                seen[pk].add(fetched)
        if not restarted and time.monotonic() - started > 2.5 * interval:
            first.kill()  # beat restarted: same schedule file, a new process
            stack.beat("beat-a")
            restarted = True
        time.sleep(0.1)
    elapsed = time.monotonic() - started

    calls = _calls_by_customer(simulator)
    rounds = elapsed / interval
    for customer in customers:
        assert 1 <= calls.get(_zaaid(simulator, customer), 0) <= int(rounds) + 1, customer.name
        times = sorted(seen[customer.pk])
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps, default=interval) >= interval * ROUND_GUARD - 0.5, gaps  # not twice
    assert_no_duplicates(simulator, customers)


# --- REL-03: workers stopped for five intervals refresh each customer once, not five times ---


def test_workers_stopped_for_five_intervals_refresh_each_customer_once(simulator, make_stack):
    interval = 3
    stack = make_stack(simulator.url, REFRESH_INTERVAL=interval)
    customers = legacy_customers(simulator, count=4)
    worker = stack.worker()
    worker.pause()  # SIGSTOP: no worker takes anything from here on
    beat = stack.beat()
    sim_post(simulator, "counters/reset")
    mark = beat.mark()
    time.sleep(5 * interval)
    wait_until(lambda: beat.log(mark).count("Sending due task refresh-due") >= 5)
    mark = beat.mark()
    beat.wait_for_log("Sending due task refresh-due", since=mark, timeout=interval + SLACK)
    # Beat logs that line before it publishes: stopping it at once (below) could kill the
    # round on its way to the broker (seen on a loaded CI machine). A second later the
    # message is there and still live (it expires after one interval).
    time.sleep(1.0)
    worker.resume()  # SIGCONT, just after a round: its message is live, the others expired
    beat.stop()  # no new round from here: what follows is the backlog alone
    resumed = timezone.now()
    wait_until(lambda: _fresh_since(customers, resumed - timedelta(seconds=interval)),
               timeout=interval + SLACK)  # fmt: skip
    time.sleep(1.5)  # anything else in the backlog has run by now

    calls = _calls_by_customer(simulator)
    assert [calls.get(_zaaid(simulator, c), 0) for c in customers] == [1] * len(customers)
    assert sim_get(simulator, "counters")["requests"]["monitor_groups_status"] == len(customers)
    assert worker.log().count("portals.tasks.refresh_due[") >= 6  # the backlog was there


# --- REL-07: the simulator restarted mid-round, one customer hanging ---------------------------


def _round_time(customers, stack) -> float:
    """Publish a round; seconds until every one of `customers` has data fetched in it."""
    started = timezone.now()
    with stack.broker_for(app):
        refresh_due.delay()
    return wait_until(lambda: _fresh_since(customers, started), timeout=60, what="the round")


def test_simulator_restart_and_a_hanging_customer_do_not_hold_up_the_others(make_stack):
    """A baseline round, then a round in which one customer hangs and the simulator restarts
    (down for a second, its keep-alive connections dropped) in the middle: the healthy
    customers are fresh within one read timeout (plus the restart and a retry's back-off) of
    the undisturbed time, and the hanging one keeps its data with a timeout error."""
    from site24x7_simulator import Simulator

    read_timeout, interval = 2.0, 4
    sim = Simulator(customers=6, seed=7, port=free_port()).start()  # restartable on its port
    try:
        stack = make_stack(
            sim.url, REFRESH_INTERVAL=interval, SITE24X7_READ_TIMEOUT=read_timeout,
            REFRESH_BACKOFF_BASE=0.2, REFRESH_BACKOFF_MAX=1.0,
            # No beat here: a healthy customer whose retries all fell inside the restart would
            # wait for a round that never comes. Full-jitter back-offs can be near 0, so give
            # twelve tries, and keep the circuit breaker (5 failures by default) from pausing
            # a customer for 15 minutes during a restart that lasts a second.
            REFRESH_MAX_RETRIES=12, BREAKER_THRESHOLD=20,
        )  # fmt: skip
        customers = legacy_customers(sim)
        hanging, healthy = customers[0], customers[1:]
        stack.worker(concurrency=4)
        baseline = _round_time(customers, stack)
        before = _state(hanging)

        time.sleep(interval * ROUND_GUARD)  # past the per-round guard
        fault(sim, kind="hang", customer=hanging.zaid)
        started, clock = timezone.now(), time.monotonic()
        with stack.broker_for(app):
            refresh_due.delay()
        wait_until(lambda: Customer.objects.filter(data_fetched_at__gt=started).exists())
        sim.stop()  # mid-round: releases the hanging request, drops every connection
        time.sleep(1.0)
        # Still hanging after the restart: armed before the server listens again, or a retry
        # landing in between would be answered (and the customer not hang at all).
        sim.add_fault(kind="hang", customer=hanging.zaid)
        sim.start()
        wait_until(lambda: _fresh_since(healthy, started), timeout=60)
        disturbed = time.monotonic() - clock

        assert disturbed <= baseline + read_timeout + 1.0 + 1.0 + SLACK, (baseline, disturbed)
        # Each try records its failure after the 2 s read timeout; a loaded machine may take
        # longer than the default wait to get there.
        wait_until(
            lambda: _reload(hanging).last_error_kind in ("timeout", "connection"), timeout=90
        )
        outcome, groups, changes = _state(hanging)
        assert (outcome[0], groups, changes) == (before[0][0], before[1], before[2])  # kept
        assert_no_duplicates(sim, healthy)
    finally:
        sim.stop()
