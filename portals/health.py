"""`/healthz` for load balancers and uptime checks: no login, no secret, JSON, read-only.

200 when all is well, 503 when any check fails:
- database: a `SELECT 1` on the default connection;
- broker: Redis answers PING within HEALTHZ_TIMEOUT (other transports: kombu connects); the
  filesystem broker of the demo counts as reachable when its folder exists and is writable;
- beat: the heartbeat that `portals.tasks.heartbeat` writes every BEAT_HEARTBEAT_INTERVAL
  (beat -> broker -> worker -> database, so it proves the whole background path) is younger
  than 3 intervals;
- data: among active customers that have a usable credential, at most HEALTHZ_STALE_FRACTION
  hold data older than 3 refresh intervals (or none yet, once discovered that long ago).
The body names each check and its figures, nothing else (no host, no URL, no error text)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Q
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .models import Customer, Heartbeat

logger = logging.getLogger("msp_dashboard.health")

BEAT = "beat"
CACHE_KEY = "heartbeat:beat"


@dataclass
class Check:
    ok: bool
    detail: dict = field(default_factory=dict)


# --- the heartbeat ------------------------------------------------------------------------------


def heartbeat_interval() -> float:
    return float(getattr(settings, "BEAT_HEARTBEAT_INTERVAL", 30))


def heartbeat_record(*, now: datetime | None = None) -> datetime:
    """Store the time of this beat, in the cache and the database (either may be down)."""
    now = now or timezone.now()
    try:
        cache.set(CACHE_KEY, now.timestamp(), timeout=int(heartbeat_interval() * 10))
    except Exception:  # the database copy still counts
        logger.warning("heartbeat: cache unavailable")
    Heartbeat.objects.update_or_create(name=BEAT, defaults={"at": now})
    return now


def heartbeat_last() -> datetime | None:
    try:
        stamp = cache.get(CACHE_KEY)
    except Exception:
        stamp = None
    if stamp is not None:
        return datetime.fromtimestamp(float(stamp), tz=timezone.get_fixed_timezone(0))
    row = Heartbeat.objects.filter(name=BEAT).values_list("at", flat=True).first()
    return row


# --- the checks ---------------------------------------------------------------------------------


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.error("healthz: database unreachable (%s)", type(exc).__name__)
        return Check(False, {"error": type(exc).__name__})
    return Check(True)


def check_broker() -> Check:
    url = str(settings.CELERY_BROKER_URL)
    timeout = float(getattr(settings, "HEALTHZ_TIMEOUT", 2.0))
    try:
        if url.startswith("filesystem:"):
            return _filesystem_broker()
        if url.startswith(("redis:", "rediss:")):
            import redis

            client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
            try:
                client.ping()
            finally:
                client.close()
            return Check(True, {"transport": "redis"})
        return _kombu_broker(url, timeout)
    except Exception as exc:
        logger.error("healthz: broker unreachable (%s)", type(exc).__name__)
        return Check(False, {"error": type(exc).__name__})


def _filesystem_broker() -> Check:
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}
    folder = options.get("data_folder_in", "")
    ok = bool(folder) and os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)
    return Check(ok, {"transport": "filesystem"} if ok else {"error": "folder not writable"})


def _kombu_broker(url: str, timeout: float) -> Check:
    from kombu import Connection

    with Connection(url, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
    return Check(True, {"transport": url.split(":", 1)[0]})


def check_beat(now: datetime) -> Check:
    interval = heartbeat_interval()
    last = heartbeat_last()
    limit = 3 * interval
    age = (now - last).total_seconds() if last else None
    ok = age is not None and age <= limit
    return Check(ok, {"age_seconds": _round(age), "max_age_seconds": limit})


def check_data(now: datetime) -> Check:
    """Worst data age across active customers with a usable credential; fails when more than
    HEALTHZ_STALE_FRACTION of them are older than 3 refresh intervals."""
    from .services import with_credential_state

    limit = timedelta(seconds=3 * settings.REFRESH_INTERVAL)
    rows = (
        with_credential_state(Customer.objects.filter(is_active=True))
        .filter(Q(credential_state="active"))
        .values_list("data_fetched_at", "last_success_at", "discovered_at")
    )
    total = stale = 0
    worst: timedelta | None = None
    for fetched, success, discovered in rows:
        total += 1
        seen = fetched or success
        age = now - (seen or discovered)
        worst = age if worst is None or age > worst else worst
        if age > limit:
            stale += 1
    fraction = stale / total if total else 0.0
    allowed = float(getattr(settings, "HEALTHZ_STALE_FRACTION", 0.25))
    detail = {
        "customers": total,
        "stale": stale,
        "stale_fraction": round(fraction, 3),
        "max_stale_fraction": allowed,
        "worst_age_seconds": _round(worst.total_seconds() if worst else None),
        "max_age_seconds": limit.total_seconds(),
    }
    return Check(fraction <= allowed, detail)


def _round(value: float | None):
    return None if value is None else round(value, 1)


def health_report(*, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    database = check_database()
    checks = {"database": database, "broker": check_broker()}
    if database.ok:
        checks["beat"] = check_beat(now)
        checks["data"] = check_data(now)
    else:
        checks["beat"] = checks["data"] = Check(False, {"error": "database unreachable"})
    ok = all(check.ok for check in checks.values())
    return {
        "status": "ok" if ok else "fail",
        "at": now.isoformat(),
        "checks": {name: {"ok": c.ok, **c.detail} for name, c in checks.items()},
    }


@require_GET
@never_cache
def healthz(request):
    """No login: for load balancers and uptime checks. 200 or 503, JSON."""
    report = health_report()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)
