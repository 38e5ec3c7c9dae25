"""Alert channels, the alert engine's state, acknowledgements and mutes, deliveries and their
log, Site24x7-side incidents, data gaps (for availability) and what each user last saw.

A subject is a customer's worst status (`group_id` "") or one of its monitor groups. Status
values are Site24x7 codes (msp_dashboard.site24x7.Status); -1 (Unknown) also stands for Stale
at customer level. Webhook URLs and signing secrets are stored encrypted through
`tokens.services.secret_seal`; only their last four characters are ever shown."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from msp_dashboard.site24x7 import Status
from tokens.crypto import masked


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook (JSON)"
    SLACK = "slack", "Slack (incoming webhook)"
    TEAMS = "teams", "Microsoft Teams (incoming webhook / workflow)"


class AlertChannel(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    enabled = models.BooleanField(default=True)
    recipients = models.TextField(blank=True, help_text="Email: one address per line or comma.")
    url_ciphertext = models.TextField(blank=True, editable=False)
    url_last4 = models.CharField(max_length=4, blank=True, editable=False)
    url_fingerprint = models.CharField(max_length=16, blank=True, editable=False)
    signing_ciphertext = models.TextField(blank=True, editable=False)
    signing_fingerprint = models.CharField(max_length=16, blank=True, editable=False)
    customer_groups = models.ManyToManyField(
        "portals.CustomerGroup",
        blank=True,
        related_name="alert_channels",
        help_text="Only customers of these groups; none: every customer.",
    )
    hold_refreshes = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Refreshes a new status must hold before it alerts; empty: ALERT_HOLD_REFRESHES.",
    )
    include_groups = models.BooleanField(
        default=True, help_text="Alert on monitor groups too, not only the customer's worst."
    )
    notify_recovery = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        permissions = [("manage_channels", "Can add, change, delete and test alert channels")]

    def __str__(self):
        return self.name

    @property
    def masked_url(self) -> str:
        return masked(self.url_last4) if self.url_ciphertext else ""

    @property
    def uses_url(self) -> bool:
        return self.kind != ChannelKind.EMAIL

    def hold(self) -> int:
        return self.hold_refreshes or settings.ALERT_HOLD_REFRESHES

    def recipient_list(self) -> list[str]:
        parts = self.recipients.replace(";", ",").replace("\n", ",").split(",")
        return [p.strip() for p in parts if p.strip()]


class AlertState(models.Model):
    """The engine's memory of one subject, updated on every refresh of its customer."""

    customer = models.ForeignKey(
        "portals.Customer", on_delete=models.CASCADE, related_name="alert_states"
    )
    group_id = models.CharField(max_length=40, blank=True)
    group_name = models.CharField(max_length=200, blank=True)
    status = models.SmallIntegerField(help_text="The status the last refresh observed.")
    streak = models.PositiveIntegerField(
        default=1, help_text="Refreshes in a row with it, counted up to the longest hold in use."
    )
    observed_at = models.DateTimeField(
        default=timezone.now,
        help_text="When this memory last changed (a steady subject is not rewritten).",
    )
    confirmed = models.JSONField(
        default=dict, help_text='{"<hold>": status}: what channels with that hold last heard.'
    )
    changes = models.JSONField(default=list, help_text="Times of recent observed changes.")
    flapping = models.BooleanField(default=False)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "group_id"], name="alert_state_unique")
        ]
        indexes = [models.Index(fields=["flapping"])]

    def __str__(self):
        return f"{self.customer_id}/{self.group_id or '*'} {self.status}x{self.streak}"


class SilenceKind(models.TextChoices):
    ACK = "ack", "Acknowledged"
    MUTE = "mute", "Muted (maintenance)"


class SilenceEnd(models.TextChoices):
    EXPIRED = "expired", "Expired"
    RECOVERED = "recovered", "Status recovered"
    WORSENED = "worsened", "Status worsened"
    CLEARED = "cleared", "Cleared by hand"
    REPLACED = "replaced", "Replaced by a newer one"


class Silence(models.Model):
    """An acknowledgement (customer or one group; optional expiry) or a mute (whole customer,
    until an end time). Active while `ended_at` is empty and `expires_at` is in the future."""

    kind = models.CharField(max_length=4, choices=SilenceKind.choices)
    customer = models.ForeignKey(
        "portals.Customer", on_delete=models.CASCADE, related_name="silences"
    )
    group_id = models.CharField(max_length=40, blank=True)
    group_name = models.CharField(max_length=200, blank=True)
    status = models.SmallIntegerField(null=True, blank=True, help_text="Status acknowledged.")
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_name = models.CharField(max_length=150, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_reason = models.CharField(max_length=10, choices=SilenceEnd.choices, blank=True)
    ended_by_name = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["ended_at", "customer"])]
        permissions = [("acknowledge", "Can acknowledge problems and mute customers")]

    def __str__(self):
        what = self.group_name or "customer"
        return f"{self.get_kind_display()} {self.customer_id}/{what} by {self.created_by_name}"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.ended_at is None and (self.expires_at is None or self.expires_at > now)


class EventKind(models.TextChoices):
    PROBLEM = "problem", "Problem"
    RECOVERY = "recovery", "Recovery"
    CHANGE = "change", "Status change"
    FLAPPING = "flapping", "Flapping"
    SETTLED = "settled", "Stopped flapping"
    UPSTREAM_DOWN = "upstream_down", "Site24x7 API failing"
    UPSTREAM_UP = "upstream_up", "Site24x7 API recovered"
    TEST = "test", "Test message"


class AlertEvent(models.Model):
    """Something worth telling: one transition as channels with hold `hold` saw it."""

    kind = models.CharField(max_length=14, choices=EventKind.choices)
    customer = models.ForeignKey(
        "portals.Customer", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    customer_name = models.CharField(max_length=200, blank=True)
    group_id = models.CharField(max_length=40, blank=True)
    group_name = models.CharField(max_length=200, blank=True)
    data_centre = models.CharField(max_length=4, blank=True)
    from_status = models.SmallIntegerField(null=True, blank=True)
    to_status = models.SmallIntegerField(null=True, blank=True)
    hold = models.PositiveSmallIntegerField(default=0)
    detail = models.CharField(max_length=300, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M} {self.kind} {self.customer_name}/{self.group_name}"

    @property
    def change_text(self) -> str:
        """ "Up → Down" or "now Up" (Stale for the customer's Unknown); "" without a status."""
        if self.to_status is None:
            return ""
        if self.from_status is None:
            return f"now {_word(self.to_status, self.group_id)}"
        return f"{_word(self.from_status, self.group_id)} → {_word(self.to_status, self.group_id)}"


def _word(code: int | None, group_id: str) -> str:
    if code is None:
        return "–"
    try:
        status = Status(code)
    except ValueError:
        status = Status.UNKNOWN
    return "Stale" if status is Status.UNKNOWN and not group_id else status.label


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed"


class Delivery(models.Model):
    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(
        max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    reason = models.CharField(max_length=100, blank=True, help_text="Why it was suppressed.")
    attempts = models.PositiveSmallIntegerField(default=0)
    last_http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the next attempt is due (the sweep re-queues "
        "deliveries whose task was lost).",
    )
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["channel", "created_at"]),
            models.Index(fields=["state", "next_attempt_at"]),
        ]

    def __str__(self):
        return f"{self.channel_id}:{self.event_id} {self.state}"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField(default=False)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration = models.DurationField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self):
        return f"{self.delivery_id}#{self.number} {'ok' if self.ok else self.error}"


class UpstreamIncident(models.Model):
    """Most customers of one data centre fail to refresh at once: Site24x7's trouble, not the
    customers'. One banner and one notice instead of a wall of customer alarms."""

    data_centre = models.CharField(max_length=4)
    since = models.DateTimeField(help_text="When the first of the failing customers started.")
    opened_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    failing = models.PositiveIntegerField(default=0)
    considered = models.PositiveIntegerField(default=0)
    error_kind = models.CharField(max_length=20, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["data_centre"], condition=Q(ended_at__isnull=True), name="one_open_incident"
            )
        ]

    def __str__(self):
        return f"{self.data_centre} since {self.since:%Y-%m-%d %H:%M}"


class DataGap(models.Model):
    """A stretch with no fresh data for a customer (beyond twice the refresh interval), closed
    by the success that ended it: excluded from availability (unknown, not up or down). The
    gap still open is derived from the customer row when read."""

    customer = models.ForeignKey("portals.Customer", on_delete=models.CASCADE, related_name="+")
    start = models.DateTimeField()
    end = models.DateTimeField()

    class Meta:
        ordering = ["start"]
        indexes = [models.Index(fields=["customer", "end"])]

    def __str__(self):
        return f"{self.customer_id} {self.start:%Y-%m-%d %H:%M}-{self.end:%H:%M}"


class UserSeen(models.Model):
    """When a user last loaded the grid (full page loads only, not polls). `previous_at` is
    the end of the user's previous visit: customers whose worst status changed after it stand
    out. A visit is a run of page loads less than SEEN_VISIT_GAP apart."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="grid_seen"
    )
    seen_at = models.DateTimeField()
    previous_at = models.DateTimeField()

    def __str__(self):
        return f"{self.user_id} seen {self.seen_at:%Y-%m-%d %H:%M}"
