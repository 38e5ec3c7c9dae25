"""Customers (Site24x7 portals), their monitor groups and the status history.

Status is stored as the Site24x7 code (see msp_dashboard.site24x7.Status); staleness and the
badges are derived when read (portals.status), never stored."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

UNKNOWN = -1  # msp_dashboard.site24x7.Status.UNKNOWN


class AuthGeneration(models.TextChoices):
    LEGACY = "legacy", "Legacy client-portal authtoken"
    OAUTH = "oauth", "OAuth 2.0"


class Customer(models.Model):
    name = models.CharField(max_length=200)
    data_centre = models.CharField(max_length=4, default="US")
    auth_generation = models.CharField(max_length=10, choices=AuthGeneration.choices)
    portal_id = models.CharField(max_length=40, blank=True)
    zaid = models.CharField(max_length=100, blank=True)
    zaaid = models.CharField(max_length=40, blank=True)
    user_id = models.CharField(max_length=40, blank=True)
    msp_credential = models.ForeignKey(
        "tokens.Credential",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="msp_customers",
        help_text="The MSP identity that discovered this customer (and, for OAuth, reads it).",
    )
    is_active = models.BooleanField(default=True)
    discovered_at = models.DateTimeField(default=timezone.now)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    # Outcome of the last refresh, written by portals.services.
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_error_kind = models.CharField(max_length=20, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_duration = models.DurationField(null=True, blank=True)
    data_fetched_at = models.DateTimeField(
        null=True, blank=True, help_text="When the stored data was fetched (fencing, REL-01)."
    )
    worst_status = models.SmallIntegerField(default=UNKNOWN)
    worst_status_since = models.DateTimeField(null=True, blank=True)
    groups_digest = models.CharField(
        max_length=32, blank=True, default="", db_default="", editable=False,
        help_text="A hash of the groups the last stored refresh fetched: a refresh that fetches "
        "the same neither reads nor writes the groups.",
    )  # fmt: skip
    throttled_until = models.DateTimeField(null=True, blank=True)
    paused_until = models.DateTimeField(null=True, blank=True)
    breaker_trips = models.PositiveIntegerField(default=0)
    # Overlap guard (REL-02): a lease taken with one conditional UPDATE, expiring by itself.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    # Per-round guard of the fan-out (REL-03): set by one conditional UPDATE when a round
    # enqueues this customer's refresh; one enqueued within 3/4 of an interval is skipped.
    refresh_enqueued_at = models.DateTimeField(null=True, blank=True)
    refresh_round = models.CharField(max_length=32, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["zaaid"], condition=~Q(zaaid=""), name="customer_unique_zaaid"
            ),
            models.UniqueConstraint(
                fields=["portal_id"], condition=~Q(portal_id=""), name="customer_unique_portal"
            ),
        ]
        indexes = [models.Index(fields=["is_active", "worst_status"])]
        # Roles (issue 6): checked only through portals.access; granted through the Groups
        # "Viewer", "Operator", "Token manager" and "Admin" (portals.roles).
        permissions = [
            ("view_dashboard", "Can see the grid, customer pages and grid.json"),
            ("refresh_customer", "Can refresh a customer now"),
            ("sync_customers", "Can sync the customer lists from Site24x7"),
        ]

    def __str__(self):
        return self.name


class MonitorGroup(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="groups")
    group_id = models.CharField(max_length=40)
    name = models.CharField(max_length=200)
    status = models.SmallIntegerField(default=UNKNOWN)
    monitors = models.PositiveIntegerField(default=0)
    error_monitors = models.PositiveIntegerField(default=0)
    top_group = models.BooleanField(default=True)
    status_since = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "group_id"], name="group_unique_per_customer"
            )
        ]

    def __str__(self):
        return f"{self.customer_id}/{self.name}"


class StatusChange(models.Model):
    """One row per observed change of a group's status, or of a customer's worst status
    (group_id empty). Groups may vanish upstream, so they are named, not referenced."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="status_changes")
    group_id = models.CharField(max_length=40, blank=True)
    group_name = models.CharField(max_length=200, blank=True)
    from_status = models.SmallIntegerField(null=True, blank=True)
    to_status = models.SmallIntegerField()
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["customer", "at"])]

    def __str__(self):
        return f"{self.customer_id}/{self.group_id or '*'} {self.from_status}->{self.to_status}"


# --- Customer groups, user scopes and the beat heartbeat (issue 6) ---------------------------


class CustomerGroup(models.Model):
    """A named set of customers (like Site24x7's customer groups) that users can be limited to."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    customers = models.ManyToManyField(Customer, related_name="customer_groups", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class UserScope(models.Model):
    """Which customers a user may see. No row, or `all_customers`: every customer; otherwise
    only the customers of `groups`. Superusers and the Admin role always see every customer.
    Applied by portals.access.customers_for_user, the one filter."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="customer_scope"
    )
    all_customers = models.BooleanField(
        default=False, help_text="Unlimited: sees every customer whatever the groups below."
    )
    groups = models.ManyToManyField(CustomerGroup, blank=True, related_name="scopes")

    class Meta:
        verbose_name = "customer scope"

    def __str__(self):
        return f"Scope of {self.user}"


class Heartbeat(models.Model):
    """The last time a periodic task ran (`beat`: portals.tasks.heartbeat), for /healthz."""

    name = models.CharField(max_length=40, primary_key=True)
    at = models.DateTimeField()

    def __str__(self):
        return f"{self.name} {self.at:%Y-%m-%d %H:%M:%S}"
