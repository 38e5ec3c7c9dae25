"""Signal receivers: the alerts app listens to portals (which never imports it)."""

from __future__ import annotations

import logging

logger = logging.getLogger("alerts")


def on_customer_refreshed(
    sender, customer_id: int, ok: bool, customer=None, groups=None, **kwargs
) -> None:
    """After every refresh (portals.signals.customer_refreshed): run the alert engine on the
    row and groups just written. An error here is logged and never reaches the refresh."""
    from .services import customer_observe

    try:
        customer_observe(customer_id=customer_id, ok=ok, customer=customer, groups=groups)
    except Exception:
        logger.exception("alerts: evaluating the refresh of customer %s failed", customer_id)


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
