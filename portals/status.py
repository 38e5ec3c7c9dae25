"""Status as the user sees it, derived when read (REL-06): never stored, never stale-as-green.

A customer is Stale when its data is older than twice the refresh interval, when it has never
been refreshed, or when its last attempt failed. Stale outranks the last known status."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

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
        return Freshness(True, f"data older than {int(stale_after().total_seconds() // 60)} min", age)
    return Freshness(False, "", age)


def customer_display_status(customer, now: datetime) -> Status:
    """The status a NOC screen should show: Unknown (rendered as Stale) unless fresh."""
    if customer_freshness(customer, now).stale:
        return Status.UNKNOWN
    return Status(customer.worst_status) if customer.worst_status in Status._value2member_map_ else Status.UNKNOWN
