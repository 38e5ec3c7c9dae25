"""Access helpers for credential views: one per object type, called first in every view.

Every credential view needs `tokens.manage_credentials` (the Token manager role, see
portals.accounts). A customer's credential is visible when its customer is
(portals.access.customers_for_user); MSP identities (no customer) serve every customer, so
only users whose scope is unlimited see or touch them. A credential outside the user's scope
is a 404 with its real id; each denial is audited once (SEC-04)."""

from portals.access import (
    PERM_CREDENTIALS,
    AccessDenied,
    NotVisible,
    client_ip,
    customers_for_user,
    denied,
    get_customer_for_user,
    require,
    user_sees_all,
)

from .models import Credential

PERM = PERM_CREDENTIALS
__all__ = [
    "client_ip",
    "credentials_for_user",
    "get_credential_for_user",
    "get_customer_for_token_manager",
    "require_token_manager",
]


def credentials_for_user(user):
    """The credentials this user may see: those of visible customers, and the MSP identities
    when nothing limits the user's scope."""
    visible = Credential.objects.filter(customer__in=customers_for_user(user))
    if user_sees_all(user):
        visible = visible | Credential.objects.filter(customer__isnull=True)
    return visible


def require_token_manager(request, *, msp: bool = False) -> None:
    """403 (audited) unless the user may manage credentials; `msp`: MSP-wide credentials
    (MSP authtokens, OAuth identities), which a user limited to some customers may not."""
    require(request, PERM)
    if msp and not user_sees_all(request.user):
        denied(request, "MSP identities need an unlimited customer scope")
        raise AccessDenied


def get_customer_for_token_manager(request, pk):
    """The customer `pk` for a credential action: 404 if not visible, 403 without the
    permission; both audited."""
    require(request, PERM)
    return get_customer_for_user(request, pk)


def get_credential_for_user(request, pk, *, perm: str = PERM) -> Credential:
    """The credential `pk` if this user may see it (404 otherwise) and holds `perm` (403)."""
    require(request, perm)
    credential = credentials_for_user(request.user).select_related("customer").filter(pk=pk).first()
    if credential is None:
        denied(request, f"credential {pk} not visible")
        raise NotVisible("No credential matches the given query.")
    return credential
