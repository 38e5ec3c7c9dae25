"""Encrypted credentials and the append-only audit trail.

Ciphertext columns hold `tokens.crypto` values; nothing outside `tokens.services` decrypts them.
Only the last four characters and a fingerprint (hash prefix) of a secret are stored in clear."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from .crypto import masked


class CredentialKind(models.TextChoices):
    MSP_AUTHTOKEN = "msp_authtoken", "MSP authtoken (legacy)"
    PORTAL_AUTHTOKEN = "portal_authtoken", "Customer portal authtoken (legacy)"
    OAUTH = "oauth", "OAuth identity (Self Client)"


class CredentialState(models.TextChoices):
    ACTIVE = "active", "Active"
    INVALID = "invalid", "Invalid (rejected by Site24x7)"
    REVOKED = "revoked", "Revoked"


class CredentialOrigin(models.TextChoices):
    CREATED = "created", "Created through the accounts API"
    IMPORTED = "imported", "Pasted / imported"
    CONNECTED = "connected", "Connected with a grant code"


class Credential(models.Model):
    kind = models.CharField(max_length=20, choices=CredentialKind.choices)
    label = models.CharField(max_length=100, blank=True)
    data_centre = models.CharField(max_length=4, default="US")
    customer = models.ForeignKey(
        "portals.Customer",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="credentials",
        help_text="Set for customer portal authtokens.",
    )
    client_id = models.CharField(max_length=200, blank=True)
    secret_ciphertext = models.TextField(blank=True, editable=False)
    client_secret_ciphertext = models.TextField(blank=True, editable=False)
    secret_last4 = models.CharField(max_length=4, blank=True, editable=False)
    fingerprint = models.CharField(max_length=16, blank=True, db_index=True, editable=False)
    state = models.CharField(
        max_length=10, choices=CredentialState.choices, default=CredentialState.ACTIVE
    )
    state_reason = models.CharField(max_length=300, blank=True)
    origin = models.CharField(max_length=10, choices=CredentialOrigin.choices)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    invalid_since = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_tested_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True)
    last_test_error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["customer", "kind", "state"])]
        # The token manager's permission (issue 6); checked only through tokens.access.
        permissions = [
            ("manage_credentials", "Can create, import, revoke, forget and test credentials")
        ]

    def __str__(self):
        who = self.label or self.get_kind_display()
        return f"{who} {self.masked_secret}"

    @property
    def masked_secret(self) -> str:
        return masked(self.secret_last4)

    @property
    def is_active(self) -> bool:
        return self.state == CredentialState.ACTIVE


class AuditImmutableError(Exception):
    """Audit events are append-only."""


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditImmutableError("audit events cannot be updated")

    def delete(self):
        raise AuditImmutableError("audit events cannot be deleted")


class AuditAction(models.TextChoices):
    CREDENTIAL_CREATE = "credential.create", "Credential created"
    CREDENTIAL_IMPORT = "credential.import", "Credential imported"
    CREDENTIAL_UPDATE = "credential.update", "Credential secret replaced"
    CREDENTIAL_DELETE = "credential.delete", "Credential row deleted"
    CREDENTIAL_REVOKE = "credential.revoke", "Credential revoked"
    CREDENTIAL_FORGET = "credential.forget", "Credential forgotten locally"
    CREDENTIAL_TEST = "credential.test", "Credential tested"
    CREDENTIAL_INVALID = "credential.invalid", "Credential rejected upstream"
    OAUTH_CONNECT = "oauth.connect", "OAuth identity connected"
    OAUTH_DISCONNECT = "oauth.disconnect", "OAuth identity disconnected"
    KEY_ROTATION = "keys.rotate", "Encryption keys rotated"
    CUSTOMER_SYNC = "customer.sync", "Customers synced"
    CUSTOMER_DELETE = "customer.delete", "Customer deleted"
    ACCESS_DENIED = "access.denied", "Access denied"
    LOGIN_SUCCESS = "login.success", "Logged in"
    LOGIN_FAILURE = "login.failure", "Login failed"
    LOGIN_LOCKED = "login.locked", "Login locked out"
    LOGOUT = "logout", "Logged out"
    ROLE_CHANGE = "role.change", "Role or scope changed"
    # Alerts, acknowledgements and mutes (issue 9, the alerts app).
    ALERT_ACK = "alert.ack", "Problem acknowledged"
    ALERT_ACK_END = "alert.ack_end", "Acknowledgement ended"
    ALERT_MUTE = "alert.mute", "Customer muted (maintenance)"
    ALERT_MUTE_END = "alert.mute_end", "Mute ended"
    ALERT_CHANNEL = "alert.channel", "Alert channel changed"
    ALERT_TEST = "alert.test", "Alert channel tested"


class AuditOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    DENIED = "denied", "Denied"


class AuditEvent(models.Model):
    """One append-only row per security-relevant event. Never holds a secret: a credential is
    named by its fingerprint (a hash prefix). Plain columns instead of foreign keys, so deleting
    a user or a customer never rewrites history."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_name = models.CharField(max_length=150, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=30, choices=AuditAction.choices, db_index=True)
    customer_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    customer_name = models.CharField(max_length=200, blank=True)
    credential_fingerprint = models.CharField(max_length=16, blank=True)
    outcome = models.CharField(max_length=10, choices=AuditOutcome.choices)
    detail = models.CharField(max_length=300, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.outcome}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditImmutableError("audit events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditImmutableError("audit events cannot be deleted")
