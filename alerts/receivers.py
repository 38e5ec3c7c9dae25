"""Signal receivers: the alerts app listens to portals (which never imports it)."""

from __future__ import annotations

import logging

logger = logging.getLogger("alerts")


def on_customers_refreshed(sender, items, **kwargs) -> None:
    """After refreshes (portals.signals.customers_refreshed): run the alert engine on the rows
    and groups just written, in one transaction for a batch. An error here is logged and
    never reaches the refresh."""
    from .services import customers_observe

    try:
        customers_observe(items)
    except Exception:
        ids = ",".join(str(item.customer_id) for item in items[:20])
        logger.exception("alerts: evaluating the refresh of customers %s failed", ids)


def on_channels_changed(sender, **kwargs) -> None:
    """An alert channel, its groups or a customer group changed: the channels' version moves
    on commit, so every process reads the enabled channels anew."""
    from .services import channels_changed

    channels_changed()


def on_grid_loading(sender, request, filters, now, **kwargs):
    """portals.signals.grid_loading: the callable that annotates this user's rows."""
    from .overlay import grid_annotator

    try:
        return grid_annotator(request, filters, now)
    except Exception:  # the grid must show even when the alerts' part cannot
        logger.exception("alerts: annotating the grid failed")
        return None


def on_grid_loaded(sender, request, grid, **kwargs) -> None:
    from .overlay import grid_extras

    try:
        grid_extras(request, grid)
    except Exception:
        logger.exception("alerts: the grid's banners and tools failed")


def on_customer_page(sender, request, page, **kwargs) -> None:
    from .overlay import customer_panel_slot

    customer_panel_slot(request, page)


def on_silence_or_incident_saved(sender, **kwargs) -> None:
    """Changes made in the Django admin reach the grid's cached snapshot too."""
    from .services import overlay_changed

    overlay_changed()


ROLE_PERMISSIONS = {
    "Operator": ("acknowledge",),
    "Token manager": ("acknowledge",),
}
"""Roles (portals.accounts) that get the alerts' permissions; Admin gets every permission."""


def grant_role_permissions(sender, using="default", apps=None, **kwargs) -> None:
    """post_migrate of this app: give the roles above their alerts permissions (idempotent;
    runs again after a test database is flushed)."""
    from django.contrib.auth.models import Group, Permission

    for role, codenames in ROLE_PERMISSIONS.items():
        group = Group.objects.using(using).filter(name=role).first()
        if group is None:
            continue
        wanted = Permission.objects.using(using).filter(
            content_type__app_label="alerts", codename__in=codenames
        )
        group.permissions.add(*wanted)
    admin = Group.objects.using(using).filter(name="Admin").first()
    if admin is not None:
        admin.permissions.add(
            *Permission.objects.using(using).filter(content_type__app_label="alerts")
        )
