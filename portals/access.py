"""One access helper per object type; every view calls one first (healthchecks style).

Roles (issue 6) will narrow these further; today: login is required for everything, and
actions need the matching model permission (superusers have all)."""

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from .models import Customer

PERM_REFRESH = "portals.change_customer"
PERM_CREDENTIALS = "tokens.change_credential"


def customers_for_user(user):
    """Every customer this user may see."""
    return Customer.objects.all()


def get_customer_for_user(request, pk, *, perm: str | None = None) -> Customer:
    """The customer `pk` if this user may see it (404 otherwise) and holds `perm` (403)."""
    customer = get_object_or_404(customers_for_user(request.user), pk=pk)
    if perm and not request.user.has_perm(perm):
        raise PermissionDenied
    return customer
