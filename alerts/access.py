"""Access helpers of the alerts, one per object type, called first in every view (the
checks themselves are portals.access's: roles and customer scopes, every denial audited).

- Channels route every customer's alerts and hold webhook secrets: `alerts.manage_channels`
  (the Admin role) and an unlimited customer scope.
- Acknowledging and muting: `alerts.acknowledge` (Operator, Token manager, Admin) on a
  customer the user may see; a silence is visible when its customer is (404 otherwise)."""

from portals.access import (
    AccessDenied,
    NotVisible,
    customers_for_user,
    denied,
    get_customer_for_user,
    require,
    require_dashboard,
    user_sees_all,
)

from .models import AlertChannel, Silence

PERM_CHANNELS = "alerts.manage_channels"
PERM_ACK = "alerts.acknowledge"

__all__ = [
    "customers_for_user",
    "get_channel_for_user",
    "get_customer_for_user",
    "get_customer_to_acknowledge",
    "get_silence_for_user",
    "require_channel_manager",
    "require_dashboard",
]


def require_channel_manager(request) -> None:
    require(request, PERM_CHANNELS)
    if not user_sees_all(request.user):
        denied(request, "alert channels need an unlimited customer scope")
        raise AccessDenied


def get_channel_for_user(request, pk) -> AlertChannel:
    require_channel_manager(request)
    channel = AlertChannel.objects.filter(pk=pk).first()
    if channel is None:
        denied(request, f"alert channel {pk} not found")
        raise NotVisible("No alert channel matches the given query.")
    return channel


def get_customer_to_acknowledge(request, pk):
    return get_customer_for_user(request, pk, perm=PERM_ACK)


def get_silence_for_user(request, pk) -> Silence:
    require(request, PERM_ACK)
    silence = (
        Silence.objects.filter(pk=pk, customer__in=customers_for_user(request.user))
        .select_related("customer")
        .first()
    )
    if silence is None:
        denied(request, f"silence {pk} not visible")
        raise NotVisible("No acknowledgement or mute matches the given query.")
    return silence
