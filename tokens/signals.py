"""Every deleted credential row is audited, whichever path deleted it (a customer's deletion
cascades here, SEC-13; the admin sets the actor with `acting`)."""

from contextlib import contextmanager
from contextvars import ContextVar

from django.db.models.signals import post_delete
from django.dispatch import receiver

from .models import AuditAction, AuditEvent, Credential

_actor: ContextVar[tuple | None] = ContextVar("tokens_actor", default=None)


@contextmanager
def acting(user, ip: str | None):
    """Name the user (and source IP) behind deletions done inside the block."""
    token = _actor.set((user, ip))
    try:
        yield
    finally:
        _actor.reset(token)


@receiver(post_delete, sender=Credential, dispatch_uid="tokens-credential-deleted")
def credential_deleted(sender, instance: Credential, **kwargs):
    user, ip = _actor.get() or (None, None)
    is_user = user is not None and getattr(user, "is_authenticated", False)
    AuditEvent.objects.create(
        actor_id=user.pk if is_user else None,
        actor_name=user.get_username() if is_user else "system",
        source_ip=ip,
        action=AuditAction.CREDENTIAL_DELETE,
        customer_id=instance.customer_id,
        credential_fingerprint=instance.fingerprint,
        outcome="success",
        detail=f"{instance.get_kind_display()} row deleted with its ciphertext",
    )


def current_actor() -> tuple:
    """(user, ip) named by the innermost `acting` block, or (None, None)."""
    user, ip = _actor.get() or (None, None)
    if user is not None and not getattr(user, "is_authenticated", False):
        return None, ip
    return user, ip
