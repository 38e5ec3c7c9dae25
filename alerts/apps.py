from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts, acknowledgements and availability"

    def ready(self):
        from portals import queries
        from portals.models import CustomerGroup
        from portals.signals import (
            customer_page_loaded,
            customers_refreshed,
            grid_loaded,
            grid_loading,
        )
        from tokens.services import secret_store_register

        from . import receivers
        from .models import AlertChannel, Silence, UpstreamIncident
        from .overlay import AVAIL_PARAM
        from .services import channels_rotate_keys

        customers_refreshed.connect(receivers.on_customers_refreshed, dispatch_uid="alerts-refresh")
        grid_loading.connect(receivers.on_grid_loading, dispatch_uid="alerts-grid-rows")
        grid_loaded.connect(receivers.on_grid_loaded, dispatch_uid="alerts-grid")
        customer_page_loaded.connect(receivers.on_customer_page, dispatch_uid="alerts-customer")
        overlay = receivers.on_silence_or_incident_saved
        _on_save_or_delete((Silence, UpstreamIncident), overlay, "overlay")
        # Whatever changes the channels' routing, through any path (admin, a group deleted),
        # gives them a new version: a worker reads them anew at its next batch.
        _on_save_or_delete((AlertChannel, CustomerGroup), receivers.on_channels_changed, "channels")
        m2m_changed.connect(
            receivers.on_channels_changed,
            sender=AlertChannel.customer_groups.through,
            dispatch_uid="alerts-channels-groups",
        )
        post_migrate.connect(receivers.grant_role_permissions, sender=self)
        secret_store_register("alert channels", channels_rotate_keys)  # rotate_token_keys
        queries.EXTRA_PARAMS.add(AVAIL_PARAM)  # ?avail=24h|7d|30d stays in every grid URL


def _on_save_or_delete(models, receiver, name: str) -> None:
    """Connect `receiver` to the saves and deletes of each model."""
    for model in models:
        for signal in (post_save, post_delete):
            uid = f"alerts-{name}-{model.__name__}-{signal}"
            signal.connect(receiver, sender=model, dispatch_uid=uid)
