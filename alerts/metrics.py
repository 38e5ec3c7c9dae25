"""/metrics in the Prometheus text format (rendered by prometheus_client).

Per customer (labels: customer_id, customer, data_centre): the worst status as the grid shows
it and as last fetched, whether it is a problem or stale, the data's age, consecutive refresh
failures, whether the last refresh failed (and how), breaker and throttle state, whether its
credential is usable, acknowledged, muted. Then credentials by kind and state, open Site24x7
incidents per data centre, alert deliveries by channel and state. A fixed number of queries
(five, or two more when the alerts snapshot is rebuilt), whatever the number of customers.
No secret and no token is ever a label or a value."""

from __future__ import annotations

import hmac
import ipaddress
import math
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from msp_dashboard.site24x7 import Status
from portals.models import Customer
from portals.queries import as_status, is_problem
from portals.services import with_credential_state
from portals.status import customer_freshness
from tokens.models import Credential

from .models import Delivery, SilenceKind
from .overlay import overlay_load

CUSTOMER_LABELS = ["customer_id", "customer", "data_centre"]


def allowed(request) -> bool:
    """A bearer token equal to METRICS_TOKEN, or a peer address in METRICS_ALLOWED_IPS."""
    token = settings.METRICS_TOKEN
    header = request.META.get("HTTP_AUTHORIZATION", "")
    presented = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if token and presented and hmac.compare_digest(presented.encode(), token.encode()):
        return True
    return _ip_allowed(request.META.get("REMOTE_ADDR") or "")


def _ip_allowed(address: str) -> bool:
    if not address or not settings.METRICS_ALLOWED_IPS:
        return False
    try:
        peer = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in settings.METRICS_ALLOWED_IPS:
        try:
            if peer in ipaddress.ip_network(entry.strip(), strict=False):
                return True
        except ValueError:
            continue
    return False


class DashboardCollector:
    def __init__(self, now: datetime):
        self.now = now

    def collect(self):
        now = self.now
        customers = list(
            with_credential_state(Customer.objects.filter(is_active=True))
            .only(
                "pk",
                "name",
                "data_centre",
                "worst_status",
                "data_fetched_at",
                "last_success_at",
                "last_attempt_at",
                "last_error",
                "last_error_kind",
                "consecutive_failures",
                "paused_until",
                "throttled_until",
                "auth_generation",
            )
            .order_by("pk")
        )
        overlay = overlay_load()
        g = {
            name: GaugeMetricFamily(f"msp_customer_{name}", text, labels=CUSTOMER_LABELS + extra)
            for name, text, extra in (
                ("status", "Worst status as the grid shows it (code; -1 stale/unknown)", []),
                ("worst_status", "Worst status as last fetched (Site24x7 code; -1 unknown)", []),
                (
                    "problem",
                    "1 when the customer needs attention (down, critical, trouble, "
                    "configuration error, stale)",
                    [],
                ),
                ("stale", "1 when the data is stale (failed refresh or too old)", []),
                ("data_age_seconds", "Age of the stored data (+Inf: never refreshed)", []),
                ("consecutive_failures", "Refresh failures in a row", []),
                ("refresh_failing", "1 when the last refresh attempt failed", ["kind"]),
                ("paused", "1 while the circuit breaker pauses refreshes", []),
                ("throttled", "1 while Site24x7 asked us to wait (Retry-After)", []),
                ("credential_ok", "1 when the credential a refresh uses is active", []),
                ("acknowledged", "1 when the customer's problem is acknowledged", []),
                ("muted", "1 while the customer is muted (maintenance)", []),
            )
        }
        for c in customers:
            labels = [str(c.pk), c.name, c.data_centre]
            freshness = customer_freshness(c, now)
            worst = as_status(c.worst_status)
            shown = Status.UNKNOWN if freshness.stale else worst
            fetched = c.data_fetched_at or c.last_success_at
            age = (now - fetched).total_seconds() if fetched else math.inf
            failing = bool(c.last_error) and bool(
                c.last_attempt_at and (fetched is None or c.last_attempt_at > fetched)
            )
            silences = [s for s in overlay.silences.get(c.pk, ()) if s.active(now)]
            g["status"].add_metric(labels, int(shown))
            g["worst_status"].add_metric(labels, int(worst))
            g["problem"].add_metric(labels, int(is_problem(shown)))
            g["stale"].add_metric(labels, int(freshness.stale))
            g["data_age_seconds"].add_metric(labels, age)
            g["consecutive_failures"].add_metric(labels, c.consecutive_failures)
            g["refresh_failing"].add_metric(labels + [c.last_error_kind or ""], int(failing))
            g["paused"].add_metric(labels, int(bool(c.paused_until and c.paused_until > now)))
            g["throttled"].add_metric(
                labels, int(bool(c.throttled_until and c.throttled_until > now))
            )
            g["credential_ok"].add_metric(labels, int(c.credential_state == "active"))
            g["acknowledged"].add_metric(
                labels, int(any(s.kind == SilenceKind.ACK and not s.group_id for s in silences))
            )
            g["muted"].add_metric(labels, int(any(s.kind == SilenceKind.MUTE for s in silences)))
        yield GaugeMetricFamily("msp_customers", "Active customers", value=len(customers))
        yield from g.values()
        yield self._credentials()
        yield self._incidents(overlay)
        yield self._deliveries(now)

    def _credentials(self):
        family = GaugeMetricFamily(
            "msp_credentials", "Stored credentials by kind and state", labels=["kind", "state"]
        )
        rows = Credential.objects.values("kind", "state").annotate(n=Count("pk")).order_by()
        for row in rows:
            family.add_metric([row["kind"], row["state"]], row["n"])
        return family

    def _incidents(self, overlay):
        family = GaugeMetricFamily(
            "msp_upstream_incident",
            "1 while most customers of a data centre fail to refresh (Site24x7-side trouble)",
            labels=["data_centre"],
        )
        for incident in overlay.incidents:
            family.add_metric([incident.data_centre], 1)
        return family

    def _deliveries(self, now):
        family = GaugeMetricFamily(
            "msp_alert_deliveries",
            "Alert deliveries of the last 24 hours by channel and state",
            labels=["channel", "state"],
        )
        rows = (
            Delivery.objects.filter(created_at__gte=now - timedelta(hours=24))
            .values("channel__name", "state")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for row in rows:
            family.add_metric([row["channel__name"], row["state"]], row["n"])
        return family


def render(now: datetime | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DashboardCollector(now or timezone.now()))
    return generate_latest(registry)
