"""JSON shapes of the data set, one function per endpoint (called under the state lock)."""

from __future__ import annotations

import functools
import time

from .data import DOWN, MONITOR_TYPES, Customer, Group, Monitor


def polled_time(now: float, monitor: Monitor) -> str:
    """``YYYY-MM-DDTHH:MM:SS+0000``: no colon in the offset, like the real payloads."""
    return _utc(int(now) - monitor.poll_offset)


@functools.lru_cache(maxsize=4096)
def _utc(timestamp: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(timestamp))


def portal(customer: Customer) -> dict:
    return {
        "portal_id": customer.portal_id,
        "zaid": customer.zaid,
        "name": customer.name,
        "portal_name": customer.portal_name,
    }


def group_status(group: Group) -> dict:
    return {
        "group_name": group.name,
        "group_id": group.group_id,
        "monitors": len(group.monitors),
        "status": group.status,
        "error_monitors": group.error_monitors,
        "top_group": group.top_group,
    }


def short_customer(customer: Customer) -> dict:
    return {"name": customer.name, "zaaid": customer.zaaid, "user_id": customer.user_id}


def current_monitor(monitor: Monitor, now: float) -> dict:
    _pattern, key, label, unit, _range = MONITOR_TYPES[monitor.monitor_type]
    entry = {
        "name": monitor.name,
        "monitor_id": monitor.monitor_id,
        "monitor_type": monitor.monitor_type,
        "status": monitor.status,
        "last_polled_time": polled_time(now, monitor),
        "attribute_key": key,
        "attribute_label": label,
        "attribute_value": "-" if monitor.status == DOWN else monitor.value,
        "unit": unit,
    }
    if monitor.status == DOWN:
        entry["down_reason"] = "Connection timed out."
    return entry


def current_status(customer: Customer, now: float, with_groups: bool = True) -> dict:
    """``data`` of /api/current_status: every group (subgroups too) with its monitors, and
    every monitor once more in the top-level ``monitors`` list."""
    monitors = [current_monitor(m, now) for m in customer.monitors()]
    data: dict = {}
    if with_groups:
        data["monitor_groups"] = []
        position = 0
        for group in customer.groups:
            size = len(group.monitors)
            data["monitor_groups"].append(
                {
                    "group_id": group.group_id,
                    "group_name": group.name,
                    "status": group.status,
                    "monitors": monitors[position : position + size],
                }
            )
            position += size
    data["monitors"] = monitors
    return data


def msp_customer_status(customer: Customer, now: float) -> dict:
    monitors = [
        {
            "monitor_id": m.monitor_id,
            "name": m.name,
            "status": m.status,
            "last_polled_time": polled_time(now, m),
            "group_ids": [g.group_id],
        }
        for g in customer.groups
        for m in g.monitors
    ]
    groups = [
        {"group_id": g.group_id, "group_name": g.name, "status": g.status} for g in customer.groups
    ]
    return {
        "zaaid": customer.zaaid,
        "customer_name": customer.name,
        "monitors": monitors,
        "monitor_groups": groups,
    }


def sim_customer(customer: Customer) -> dict:
    """A customer as ``GET /_sim/customers`` shows it, secrets included."""
    return {
        "name": customer.name,
        "portal_name": customer.portal_name,
        "portal_id": customer.portal_id,
        "zaid": customer.zaid,
        "zaaid": customer.zaaid,
        "user_id": customer.user_id,
        "email": customer.email,
        "password": customer.password,
        "groups": [sim_group(g) for g in customer.groups],
    }


def sim_group(group: Group) -> dict:
    return {
        "group_id": group.group_id,
        "name": group.name,
        "status": group.status,
        "error_monitors": group.error_monitors,
        "top_group": group.top_group,
        "parent_group_id": group.parent_group_id,
        "monitors": [sim_monitor(m) for m in group.monitors],
    }


def sim_monitor(monitor: Monitor) -> dict:
    return {
        "monitor_id": monitor.monitor_id,
        "name": monitor.name,
        "monitor_type": monitor.monitor_type,
        "status": monitor.status,
    }
