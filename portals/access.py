"""One access helper per object type; every view calls one first (healthchecks style).

The one place that checks roles (permissions, see portals.accounts) and customer scopes:

- `customers_for_user(user)` is the single filter of what a user may see, used by the grid,
  its JSON and summary counts, the customer page, refresh, and every credential view.
- `require(request, perm)` answers 403 without the permission; `get_customer_for_user` answers
  404 for a customer outside the user's scope (with its real id: no existence oracle) and 403
  without the permission. Each denial writes one audit event and one log line (SEC-04).

Scope default: a user without a UserScope row, or with `all_customers`, sees every customer;
superusers and the Admin role always do. Deny-by-default comes from the roles: a user without
a role (no `portals.view_dashboard`) gets 403 everywhere, so an unlimited scope is granted only
together with a role, and limiting is opt-in per user."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef
from django.http import Http404

from .accounts import ADMIN, CREDENTIALS, REFRESH, SYNC, VIEW
from .models import Customer, CustomerGroup, UserScope

logger = logging.getLogger("msp_dashboard.access")

PERM_VIEW = VIEW
PERM_REFRESH = REFRESH
PERM_SYNC = SYNC
PERM_CREDENTIALS = CREDENTIALS


class AccessDenied(PermissionDenied):
    """A 403 whose audit event is already written (the 403 handler writes one for others)."""

    audited = True


class NotVisible(Http404):
    """A 404 for an object outside the user's scope (audited)."""

    audited = True


# --- scopes ---------------------------------------------------------------------------------


def customers_for_user(user):
    """Every customer this user may see: one queryset, no extra query (the scope is a
    subquery, so the grid's query count does not change)."""
    customers = Customer.objects.all()
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return customers.none()
    if user.is_superuser:
        return customers
    limited = UserScope.objects.filter(user=user.pk, all_customers=False)
    admin = get_user_model().groups.through.objects.filter(user=user.pk, group__name=ADMIN)
    member = CustomerGroup.customers.through.objects.filter(
        customer=OuterRef("pk"), customergroup__scopes__user=user.pk
    )
    return customers.filter(~Exists(limited) | Exists(admin) | Exists(member))


def user_sees_all(user) -> bool:
    """True when nothing limits the user: MSP-wide things (MSP identities, sync) need it.
    One query, remembered on the user object for the rest of the request."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser:
        return True
    if not hasattr(user, "_sees_all_cache"):
        model = get_user_model()
        limited = UserScope.objects.filter(user=OuterRef("pk"), all_customers=False)
        admin = model.groups.through.objects.filter(user=OuterRef("pk"), group__name=ADMIN)
        unlimited = model.objects.filter(pk=user.pk).filter(Exists(admin) | ~Exists(limited))
        user._sees_all_cache = unlimited.exists()
    return user._sees_all_cache


# --- checks ---------------------------------------------------------------------------------


def client_ip(request) -> str | None:
    """The peer address (REMOTE_ADDR; msp_dashboard.middleware.RealIPMiddleware sets it from
    the proxy's X-Real-IP when BEHIND_PROXY is on). Other headers are never trusted."""
    return request.META.get("REMOTE_ADDR") or None


def denied(request, what: str, *, customer=None, credential=None) -> None:
    """Write the one audit event and log line of a denial."""
    from tokens.models import AuditAction, AuditOutcome
    from tokens.services import audit_record

    user = request.user
    name = user.get_username() if user.is_authenticated else "anonymous"
    logger.warning(
        "access denied user=%r ip=%s %s %s (%s)",
        name,
        client_ip(request),
        request.method,
        request.path[:200],
        what,
    )
    audit_record(
        action=AuditAction.ACCESS_DENIED,
        outcome=AuditOutcome.DENIED,
        actor=user,
        ip=client_ip(request),
        customer=customer,
        credential=credential,
        detail=f"{request.method} {request.path[:200]} ({what})",
    )


def require(request, perm: str) -> None:
    """403 (audited) unless the user holds `perm`."""
    if not request.user.has_perm(perm):
        denied(request, f"missing permission {perm}")
        raise AccessDenied


def require_dashboard(request) -> None:
    """The check of the grid views (the grid, its partial and JSON)."""
    require(request, PERM_VIEW)


def get_customer_for_user(request, pk, *, perm: str | None = None) -> Customer:
    """The customer `pk` if this user may see it and holds `perm`: 403 without the viewer
    permission or `perm`, 404 when the customer is outside the user's scope or missing."""
    require(request, PERM_VIEW)
    customer = customers_for_user(request.user).filter(pk=pk).first()
    if customer is None:
        denied(request, f"customer {pk} not visible")
        raise NotVisible("No customer matches the given query.")
    if perm:
        require(request, perm)
    return customer
