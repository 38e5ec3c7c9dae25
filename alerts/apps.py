from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts, acknowledgements and availability"

    def ready(self):
        from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save

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
        for model in (Silence, UpstreamIncident):
            for signal in (post_save, post_delete):
                signal.connect(
                    receivers.on_silence_or_incident_saved,
                    sender=model,
                    dispatch_uid=f"alerts-overlay-{model.__name__}-{signal}",
                )
        # Whatever changes the channels' routing, through any path (admin, a group deleted),
        # gives them a new version: a worker reads them anew at its next batch.
        for model in (AlertChannel, CustomerGroup):
            for signal in (post_save, post_delete):
                signal.connect(
                    receivers.on_channels_changed,
                    sender=model,
                    dispatch_uid=f"alerts-channels-{model.__name__}-{signal}",
                )
        m2m_changed.connect(
            receivers.on_channels_changed,
            sender=AlertChannel.customer_groups.through,
            dispatch_uid="alerts-channels-groups",
        )
        post_migrate.connect(receivers.grant_role_permissions, sender=self)
        secret_store_register("alert channels", channels_rotate_keys)  # rotate_token_keys
        queries.EXTRA_PARAMS.add(AVAIL_PARAM)  # ?avail=24h|7d|30d stays in every grid URL
