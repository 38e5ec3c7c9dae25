"""/metrics: Prometheus text format parsed by prometheus_client's own parser, no login but a
bearer token or an allowed address, a fixed number of queries, no secret in it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from msp_dashboard.site24x7 import Status
from tests.grid_support import add_token, make_customer, seed_many

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_cache")]
pytest_plugins = ["tests.alerts_support"]
TOKEN = "metrics-token-0123456789abcdef"


def scrape(client=None, **headers):
    return (client or Client()).get("/metrics", **headers)


def families(response) -> dict:
    text = response.content.decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(found, name: str, **labels) -> float:
    family = found[name.removesuffix("_total")]
    for s in family.samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no {name} {labels}")


def test_metrics_need_the_token_or_an_allowed_address(settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "", []
    assert scrape().status_code == 403  # neither configured: nobody
    settings.METRICS_TOKEN = TOKEN
    denied = scrape()
    assert denied.status_code == 401 and denied["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 401
    assert scrape(HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    ok = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert ok.status_code == 200 and ok["Content-Type"].startswith("text/plain; version=")
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_IPS = "", ["10.0.0.0/8", "192.0.2.7"]
    assert scrape(REMOTE_ADDR="10.1.2.3").status_code == 200
    assert scrape(REMOTE_ADDR="192.0.2.7").status_code == 200
    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 403
    assert Client().post("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 405


def test_metrics_say_what_the_grid_says(settings, django_capture_on_commit_callbacks):
    from alerts.models import UpstreamIncident
    from alerts.services import silence_acknowledge

    settings.METRICS_TOKEN = TOKEN
    down = make_customer("Down Inc", worst=Status.DOWN, groups=[("ERP", Status.DOWN)])
    make_customer("Fine Ltd", groups=[("Web", Status.UP)])
    stale = make_customer("Never Ltd", fetched=None, token="invalid")
    stale.last_error, stale.last_error_kind = "Site24x7 server error (HTTP 503)", "server"
    stale.last_attempt_at, stale.consecutive_failures = timezone.now(), 3
    stale.save()
    add_token(down, state="active", last4="CANARY-SECRET-NEVER-SHOWN"[-4:])
    with django_capture_on_commit_callbacks(execute=True):
        silence_acknowledge(customer=down, note="known")
        UpstreamIncident.objects.create(data_centre="EU", since=timezone.now())
    response = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    found = families(response)
    labels = {"customer_id": str(down.pk), "customer": "Down Inc", "data_centre": "US"}
    assert sample(found, "msp_customer_status", **labels) == Status.DOWN
    assert sample(found, "msp_customer_problem", **labels) == 1
    assert sample(found, "msp_customer_acknowledged", **labels) == 1
    assert sample(found, "msp_customer_data_age_seconds", **labels) < 60
    assert sample(found, "msp_customer_problem", customer="Fine Ltd") == 0
    assert sample(found, "msp_customer_status", customer="Never Ltd") == -1
    assert sample(found, "msp_customer_stale", customer="Never Ltd") == 1
    assert sample(found, "msp_customer_data_age_seconds", customer="Never Ltd") == float("inf")
    assert sample(found, "msp_customer_consecutive_failures", customer="Never Ltd") == 3
    assert sample(found, "msp_customer_refresh_failing", customer="Never Ltd", kind="server") == 1
    assert sample(found, "msp_customer_credential_ok", customer="Never Ltd") == 0
    assert sample(found, "msp_customers") == 3
    assert sample(found, "msp_credentials", kind="portal_authtoken", state="invalid") == 1
    assert sample(found, "msp_upstream_incident", data_centre="EU") == 1
    text = response.content.decode()
    assert "CANARY" not in text and TOKEN not in text


def test_metrics_cost_the_same_queries_for_any_number_of_customers(settings):
    settings.METRICS_TOKEN = TOKEN
    seed_many(5, groups=3, prefix="Small")
    scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")  # the alerts' snapshot, cached

    def count():
        with CaptureQueriesContext(connection) as ctx:
            assert scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
        return len(ctx.captured_queries)

    small = count()
    seed_many(60, groups=3, prefix="Large")
    assert count() == small <= 4
