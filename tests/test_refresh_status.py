"""Derived freshness and badges (REL-06): pure functions of a customer row and the clock."""

from datetime import UTC, datetime, timedelta

import pytest

from msp_dashboard.site24x7 import Status
from portals.models import Customer
from portals.status import customer_badges, customer_display_status, customer_freshness

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _interval(settings):
    settings.REFRESH_INTERVAL = 300
    settings.TIME_ZONE = "UTC"


def customer(**fields) -> Customer:
    values = {
        "name": "Acme",
        "is_active": True,
        "worst_status": int(Status.UP),
        "data_fetched_at": NOW - timedelta(minutes=1),
        "last_attempt_at": NOW - timedelta(minutes=1),
        "last_success_at": NOW - timedelta(minutes=1),
    }
    return Customer(**{**values, **fields})


def kinds(badges) -> list[str]:
    return [kind for kind, _ in badges]


def test_fresh_data_shows_its_status_and_no_badge():
    fresh = customer()
    assert not customer_freshness(fresh, NOW).stale
    assert customer_display_status(fresh, NOW) is Status.UP
    assert customer_badges(fresh, NOW, "active") == []


def test_data_older_than_two_intervals_is_stale_never_green():
    old = customer(data_fetched_at=NOW - timedelta(minutes=11))
    freshness = customer_freshness(old, NOW)
    assert freshness.stale and "older than 10 min" in freshness.reason
    assert customer_display_status(old, NOW) is Status.UNKNOWN
    assert kinds(customer_badges(old, NOW, "active")) == ["stale"]
    assert not customer_freshness(customer(data_fetched_at=NOW - timedelta(minutes=9)), NOW).stale


def test_a_failed_last_attempt_is_stale_with_the_reason():
    failed = customer(last_attempt_at=NOW, last_error="Site24x7 server error (HTTP 503)")
    freshness = customer_freshness(failed, NOW)
    assert freshness.stale and "HTTP 503" in freshness.reason
    assert customer_display_status(failed, NOW) is Status.UNKNOWN


def test_never_refreshed_is_stale():
    never = customer(data_fetched_at=None, last_success_at=None, last_attempt_at=None)
    assert customer_freshness(never, NOW).reason == "never refreshed"


def test_throttle_pause_and_credential_badges():
    row = customer(
        throttled_until=NOW + timedelta(minutes=7),
        paused_until=NOW + timedelta(minutes=15),
    )
    badges = dict(customer_badges(row, NOW, "invalid"))
    assert badges["throttled"] == "Throttled until 12:07"
    assert badges["paused"].startswith("Paused by the circuit breaker until 12:15")
    assert badges["credential-invalid"] == "Credential invalid"
    assert "no-credential" in kinds(customer_badges(customer(), NOW, None))
    assert "no-credential" in kinds(customer_badges(customer(), NOW, "revoked"))


def test_past_throttles_and_pauses_show_nothing():
    row = customer(throttled_until=NOW - timedelta(seconds=1), paused_until=NOW)
    assert customer_badges(row, NOW, "active") == []


def test_inactive_and_running_badges():
    row = customer(is_active=False, lease_until=NOW + timedelta(seconds=30))
    assert kinds(customer_badges(row, NOW, "active")) == ["inactive", "refreshing"]


@pytest.mark.django_db
def test_badges_make_no_queries(django_assert_num_queries):
    with django_assert_num_queries(0):
        customer_badges(customer(throttled_until=NOW + timedelta(minutes=1)), NOW, "active")
