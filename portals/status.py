"""Status as the user sees it, derived when read (REL-06): never stored, never stale-as-green.

A customer is Stale when its data is older than twice the refresh interval, when it has never
been refreshed, or when its last attempt failed. Stale outranks the last known status."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from msp_dashboard.site24x7 import Status


@dataclass(frozen=True)
class Freshness:
    stale: bool
    reason: str  # empty when fresh
    age: timedelta | None  # since the stored data was fetched; None if never


def stale_after() -> timedelta:
    return timedelta(seconds=2 * settings.REFRESH_INTERVAL)


def customer_freshness(customer, now: datetime) -> Freshness:
    fetched = customer.data_fetched_at or customer.last_success_at
    age = now - fetched if fetched else None
    if fetched is None:
        return Freshness(True, "never refreshed", None)
    if customer.last_attempt_at and customer.last_attempt_at > fetched and customer.last_error:
        return Freshness(True, f"last refresh failed: {customer.last_error}", age)
    if age > stale_after():
        minutes = int(stale_after().total_seconds() // 60)
        return Freshness(True, f"data older than {minutes} min", age)
    return Freshness(False, "", age)


def customer_display_status(customer, now: datetime) -> Status:
    """The status a NOC screen should show: Unknown (rendered as Stale) unless fresh."""
    if customer_freshness(customer, now).stale:
        return Status.UNKNOWN
    known = customer.worst_status in Status._value2member_map_
    return Status(customer.worst_status) if known else Status.UNKNOWN


def clock(moment: datetime) -> str:
    """HH:MM in the dashboard's time zone."""
    return timezone.localtime(moment).strftime("%H:%M")


def customer_badges(customer, now: datetime, credential_state: str | None) -> list[tuple[str, str]]:
    """(kind, text) badges for one customer; pure (no queries). `credential_state` is the state
    of the credential a refresh would use ("active", "invalid", "revoked") or None, e.g. the
    `credential_state` annotation of `portals.services.with_credential_state`."""
    badges = []
    freshness = customer_freshness(customer, now)
    if freshness.stale:
        badges.append(("stale", f"Stale: {freshness.reason}"))
    if not customer.is_active:
        badges.append(("inactive", "No longer listed by Site24x7"))
    if credential_state in (None, "", "revoked"):
        badges.append(("no-credential", "No credential"))
    elif credential_state == "invalid":
        badges.append(("credential-invalid", "Credential invalid"))
    if customer.throttled_until and customer.throttled_until > now:
        badges.append(("throttled", f"Throttled until {clock(customer.throttled_until)}"))
    if customer.paused_until and customer.paused_until > now:
        text = f"Paused by the circuit breaker until {clock(customer.paused_until)}"
        badges.append(("paused", f"{text}: upstream failing"))
    if customer.lease_until and customer.lease_until > now:
        badges.append(("refreshing", "Refreshing"))
    return badges
