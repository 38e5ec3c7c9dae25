"""/healthz (issue 6): no login, no secret, JSON; 200 when all is well and 503 for each way
it can go wrong (database, broker, beat heartbeat, stale data)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError, connection
from django.utils import timezone

from portals.health import CACHE_KEY, heartbeat_record
from portals.models import Heartbeat
from portals.tasks import heartbeat
from tests.grid_support import make_customer

pytestmark = pytest.mark.django_db


def _health(client):
    response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    return response.status_code, json.loads(response.content)


@pytest.fixture
def healthy(db):
    heartbeat_record()
    for name in ("One", "Two", "Three", "Four"):
        make_customer(name)


def test_all_well_is_200_without_a_login(client, healthy):
    status, body = _health(client)
    assert status == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "beat", "data"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["data"]["customers"] == 4
    assert body["checks"]["beat"]["max_age_seconds"] == 90


def test_the_body_names_no_host_url_or_secret(client, healthy, settings):
    settings.CELERY_BROKER_URL = "redis://:hunter2-secret@127.0.0.1:1/0"
    _, body = _health(client)
    text = json.dumps(body)
    for needle in ("hunter2", "127.0.0.1", "redis://", str(django_settings.SECRET_KEY)[:12]):
        assert needle not in text


def test_database_down_is_503(client, healthy, monkeypatch):
    def broken(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken)
    status, body = _health(client)
    assert status == 503
    assert body["checks"]["database"] == {"ok": False, "error": "OperationalError"}
    assert body["checks"]["beat"]["ok"] is False


def test_redis_broker_down_is_503(client, healthy, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    status, body = _health(client)
    assert status == 503
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_redis_broker_up(client, healthy, settings, redis_url):
    settings.CELERY_BROKER_URL = redis_url
    status, body = _health(client)
    assert status == 200, body
    assert body["checks"]["broker"] == {"ok": True, "transport": "redis"}


def test_filesystem_broker_counts_when_its_folder_is_writable(client, healthy, settings, tmp_path):
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path)}
    status, body = _health(client)
    assert status == 200, body
    assert body["checks"]["broker"] == {"ok": True, "transport": "filesystem"}
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path / "missing")}
    status, body = _health(client)
    assert status == 503
    assert body["checks"]["broker"]["ok"] is False


def test_beat_heartbeat_older_than_three_intervals_is_503(client, healthy, settings):
    settings.BEAT_HEARTBEAT_INTERVAL = 30
    heartbeat_record(now=timezone.now() - timedelta(seconds=80))
    assert _health(client)[0] == 200
    heartbeat_record(now=timezone.now() - timedelta(seconds=100))
    status, body = _health(client)
    assert status == 503
    assert body["checks"]["beat"]["ok"] is False
    assert body["checks"]["beat"]["age_seconds"] >= 100


def test_no_heartbeat_ever_is_503(client, db):
    status, body = _health(client)
    assert status == 503
    assert body["checks"]["beat"] == {"ok": False, "age_seconds": None, "max_age_seconds": 90.0}


def test_the_database_copy_of_the_heartbeat_counts_when_the_cache_lost_it(client, healthy):
    from django.core.cache import cache

    cache.delete(CACHE_KEY)
    assert _health(client)[0] == 200


def test_stale_data_for_too_many_customers_is_503(client, healthy, settings):
    old = timezone.now() - timedelta(seconds=3 * settings.REFRESH_INTERVAL + 60)
    make_customer("Stale one", fetched=old)
    status, body = _health(client)  # 1 of 5 = 20%: within the 25% allowed
    assert status == 200, body
    assert body["checks"]["data"]["stale"] == 1
    assert body["checks"]["data"]["worst_age_seconds"] >= 3 * settings.REFRESH_INTERVAL + 60
    make_customer("Stale two", fetched=old)
    status, body = _health(client)  # 2 of 6 = 33%
    assert status == 503
    assert body["checks"]["data"]["ok"] is False
    assert body["checks"]["data"]["stale_fraction"] == pytest.approx(0.333, abs=0.001)


def test_customers_that_cannot_refresh_do_not_count(client, healthy, settings):
    old = timezone.now() - timedelta(days=2)
    for n in range(3):
        make_customer(f"No token {n}", fetched=old, token=None)
        make_customer(f"Bad token {n}", fetched=old, token="invalid")
        make_customer(f"Gone {n}", fetched=old, is_active=False)
    status, body = _health(client)
    assert status == 200, body
    assert body["checks"]["data"]["customers"] == 4


def test_a_customer_never_refreshed_counts_once_discovered_long_ago(client, healthy):
    make_customer("New", fetched=None)  # just discovered: not stale yet
    assert _health(client)[0] == 200
    long_ago = timezone.now() - timedelta(hours=1)
    make_customer("Never", fetched=None, discovered_at=long_ago)
    make_customer("Never 2", fetched=None, discovered_at=long_ago)
    assert _health(client)[0] == 503


def test_the_heartbeat_task_writes_the_cache_and_the_database(db):
    from django.core.cache import cache

    stamp = heartbeat()
    assert Heartbeat.objects.get(name="beat").at.isoformat() == stamp
    assert cache.get(CACHE_KEY) is not None


def test_beat_runs_the_heartbeat_every_interval(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["beat-heartbeat"]
    assert entry["task"] == "portals.tasks.heartbeat"
    assert entry["schedule"] == settings.BEAT_HEARTBEAT_INTERVAL == 30
    assert entry["options"]["expires"] <= settings.BEAT_HEARTBEAT_INTERVAL


def test_healthz_is_get_only(client, db):
    assert client.post("/healthz").status_code in (403, 405)
