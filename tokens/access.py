"""Access helpers for credential views: one per object type, called first in every view.

A credential of a customer is visible when its customer is (portals.access); MSP identities
(no customer) to every token manager. Every action needs `tokens.change_credential`. Each
denial is audited (SEC-04)."""

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404

from portals.access import PERM_CREDENTIALS, customers_for_user, get_customer_for_user

from .models import AuditAction, AuditOutcome, Credential
from .services import audit_record

logger = logging.getLogger(__name__)

PERM = PERM_CREDENTIALS


def client_ip(request) -> str | None:
    """The peer address (REMOTE_ADDR). Behind a reverse proxy this is the proxy's address
    unless the proxy (or a middleware you trust) rewrites REMOTE_ADDR from X-Forwarded-For;
    the header itself is never trusted here, since any client can send it."""
    return request.META.get("REMOTE_ADDR") or None


def _denied(request, what: str, *, customer=None, credential=None) -> None:
    audit_record(
        action=AuditAction.ACCESS_DENIED,
        outcome=AuditOutcome.DENIED,
        actor=request.user,
        ip=client_ip(request),
        customer=customer,
        credential=credential,
        detail=f"{request.method} {request.path[:200]} ({what})",
    )


def require_token_manager(request) -> None:
    """403 (audited) unless the user may manage credentials."""
    if not request.user.has_perm(PERM):
        _denied(request, "missing permission")
        raise PermissionDenied


def get_customer_for_token_manager(request, pk):
    """The customer `pk` for a credential action: 404 if not visible, 403 without the
    permission; both audited."""
    try:
        return get_customer_for_user(request, pk, perm=PERM)
    except PermissionDenied:
        _denied(request, "missing permission")
        raise
    except Http404:
        _denied(request, f"customer {pk} not visible")
        raise


def get_credential_for_user(request, pk, *, perm: str = PERM) -> Credential:
    """The credential `pk` if this user may see it (404 otherwise) and holds `perm` (403)."""
    credential = get_object_or_404(Credential.objects.select_related("customer"), pk=pk)
    if credential.customer_id is not None:
        visible = customers_for_user(request.user).filter(pk=credential.customer_id).exists()
        if not visible:
            _denied(request, f"credential {pk} not visible")
            raise Http404("No credential matches the given query.")
    if perm and not request.user.has_perm(perm):
        _denied(request, "missing permission", credential=credential)
        raise PermissionDenied
    return credential
