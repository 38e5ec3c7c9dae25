"""Pure parsers: decoded JSON payloads in, dataclasses out. No I/O.

They raise `ResponseError` on a wrong shape and the matching `Site24x7Error` subclass for an
error envelope (non-zero `code`/`error_code`; auth codes give `AuthError`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .classify import Context, api_error
from .errors import ResponseError
from .status import Status, parse_status, worst_status
from .types import GroupStatus, MspCustomer, Portal

ALL_MONITORS_GROUP_ID = "all"
ALL_MONITORS_GROUP_NAME = "All monitors"


def unwrap(payload: Any, endpoint: str) -> Any:
    """The `data` of a Site24x7 success envelope; raise on an error envelope or a wrong shape."""
    ctx = Context(endpoint=endpoint, family="api")
    if not isinstance(payload, dict):
        raise ctx.error(ResponseError, "response is not a JSON object")
    error = api_error(payload, ctx)
    if error is not None:
        raise error
    if "data" not in payload:
        raise ctx.error(ResponseError, "response has no data")
    return payload["data"]


def _fail(endpoint: str, message: str) -> ResponseError:
    return ResponseError(message, endpoint=endpoint)


def _items(data: Any, keys: Iterable[str], endpoint: str) -> list[dict[str, Any]]:
    """A list of objects from `data` given as a list, `{}`, or an object wrapping the list."""
    if isinstance(data, dict):
        key = next((key for key in keys if key in data), None)
        if key is None and data:
            raise _fail(endpoint, "data is an object without a known list")
        data = data.get(key) if key else None
    if data is None:
        return []
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise _fail(endpoint, "data is not a list of objects")
    return data


def _identifier(item: dict[str, Any], keys: Iterable[str], endpoint: str, what: str) -> str:
    """An id given as a string or an integer, from the first key present."""
    for key in keys:
        value = item.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int) or (isinstance(value, str) and value.strip()):
            return str(value).strip()
        break
    raise _fail(endpoint, f"missing or invalid {what}")


def _text(item: dict[str, Any], keys: Iterable[str], default: str = "") -> str:
    for key in keys:
        value = item.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return default


def _count(value: Any, endpoint: str) -> int:
    """A monitor count from an int, numeric string, integral float, list of ids, or None."""
    if value is None:
        return 0
    if isinstance(value, list):
        return len(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value) <= 12:
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _fail(endpoint, "invalid monitor count")


def _top_group(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no")
    return True if value is None else bool(value)


# --- legacy: GET /api/monitor_groups/status --------------------------------------------------


def parse_monitor_groups_status(payload: dict[str, Any]) -> list[GroupStatus]:
    """Groups of `GET /api/monitor_groups/status` (legacy client-portal authtoken)."""
    endpoint = "monitor_groups_status"
    groups = _items(unwrap(payload, endpoint), ("monitor_groups", "groups"), endpoint)
    return [_summary_group(group, endpoint) for group in groups]


def _summary_group(group: dict[str, Any], endpoint: str) -> GroupStatus:
    return GroupStatus(
        group_id=_identifier(group, ("group_id",), endpoint, "group_id"),
        name=_text(group, ("group_name", "display_name", "name")),
        status=parse_status(group.get("status")),
        monitors=_count(group.get("monitors"), endpoint),
        error_monitors=_count(group.get("error_monitors"), endpoint),
        top_group=_top_group(group.get("top_group")),
    )


# --- configuration: GET /api/monitor_groups ---------------------------------------------------


def parse_monitor_groups_config(payload: dict[str, Any]) -> list[GroupStatus]:
    """Groups of the configuration listing `GET /api/monitor_groups`: no status is known there.

    Status is UNKNOWN, `monitors` is the number of monitor ids, `error_monitors` is 0 and
    `top_group` is False only for subgroups (objects with a `top_group_id`/`parent_group_id`).
    """
    endpoint = "monitor_groups"
    groups = _items(unwrap(payload, endpoint), ("monitor_groups", "groups"), endpoint)
    return [
        GroupStatus(
            group_id=_identifier(group, ("group_id",), endpoint, "group_id"),
            name=_text(group, ("display_name", "group_name", "name")),
            status=Status.UNKNOWN,
            monitors=_count(group.get("monitors"), endpoint),
            error_monitors=0,
            top_group=not (group.get("top_group_id") or group.get("parent_group_id")),
        )
        for group in groups
    ]


# --- OAuth: GET /api/current_status?group_required=true ---------------------------------------


def parse_current_status(payload: dict[str, Any]) -> list[GroupStatus]:
    """Monitor groups of `GET /api/current_status`, summarised per group.

    monitors = number of the group's monitors (or the integer given); error_monitors = those
    whose status is not Up; status = the group's own status, else the worst of its monitors.
    Monitors outside any group are not summarised. `data: {}` gives [].
    """
    endpoint = "current_status"
    data = unwrap(payload, endpoint)
    if data in ([], None):
        return []
    if not isinstance(data, dict):
        raise _fail(endpoint, "data is not an object")
    groups = _items(data.get("monitor_groups"), (), endpoint)
    return [_current_status_group(group, endpoint) for group in groups]


def _current_status_group(group: dict[str, Any], endpoint: str) -> GroupStatus:
    raw_monitors = group.get("monitors")
    if isinstance(raw_monitors, list):
        statuses = _monitor_statuses(raw_monitors, endpoint)
        count, errors = len(statuses), sum(status is not Status.UP for status in statuses)
    else:
        statuses, count, errors = (
            [],
            _count(raw_monitors, endpoint),
            _group_error_count(group, endpoint),
        )
    own = group.get("status")
    return GroupStatus(
        group_id=_identifier(group, ("group_id",), endpoint, "group_id"),
        name=_text(group, ("group_name", "display_name", "name")),
        status=worst_status(statuses) if own is None else parse_status(own),
        monitors=count,
        error_monitors=errors,
        top_group=True,
    )


def _monitor_statuses(monitors: list[Any], endpoint: str) -> list[Status]:
    if not all(isinstance(monitor, dict) for monitor in monitors):
        raise _fail(endpoint, "monitors is not a list of objects")
    return [parse_status(monitor.get("status")) for monitor in monitors]


def _group_error_count(group: dict[str, Any], endpoint: str) -> int:
    keys = ("downMonitorsCount", "criticalMonitorsCount", "troubleMonitorsCount")
    return sum(_count(group.get(key), endpoint) for key in keys)


# --- MSP listings -----------------------------------------------------------------------------


def parse_portals(payload: dict[str, Any]) -> list[Portal]:
    """Customer portals of `GET /api/msp/customers/portals` (shape tolerant)."""
    endpoint = "portals"
    items = _items(unwrap(payload, endpoint), ("portals", "customers"), endpoint)
    return [
        Portal(
            portal_id=_identifier(item, ("portal_id",), endpoint, "portal_id"),
            zaid=_identifier(item, ("zaid",), endpoint, "zaid"),
            name=_text(item, ("name", "display_name", "customer_company", "portal_name")),
        )
        for item in items
    ]


def parse_msp_customers(payload: dict[str, Any]) -> list[MspCustomer]:
    """Customers of `GET /api/short/msp/customers`."""
    endpoint = "short_customers"
    items = _items(unwrap(payload, endpoint), ("customers",), endpoint)
    return [
        MspCustomer(
            name=_text(item, ("name", "customer_name", "display_name")),
            zaaid=_identifier(item, ("zaaid",), endpoint, "zaaid"),
            user_id=_text(item, ("user_id",)),
        )
        for item in items
    ]


def parse_msp_monitors_status(payload: dict[str, Any]) -> dict[str, list[GroupStatus]]:
    """Groups per customer (keyed by zaaid) of `GET /api/msp/customers/monitors/status`.

    Each `monitor_groups` entry counts the customer's monitors whose `group_ids` name it (or
    whose id the group lists). A customer with monitors but no `monitor_groups` gets one
    synthetic group "all" / "All monitors" so its monitors are not lost.
    """
    endpoint = "msp_monitors_status"
    customers = _items(unwrap(payload, endpoint), ("customers",), endpoint)
    result: dict[str, list[GroupStatus]] = {}
    for customer in customers:
        zaaid = _identifier(customer, ("zaaid",), endpoint, "zaaid")
        result[zaaid] = _customer_groups(customer, endpoint)
    return result


def _customer_groups(customer: dict[str, Any], endpoint: str) -> list[GroupStatus]:
    monitors = _items(customer.get("monitors"), (), endpoint)
    groups = _items(customer.get("monitor_groups"), (), endpoint)
    if not groups:
        if not monitors:
            return []
        groups = [{"group_id": ALL_MONITORS_GROUP_ID, "group_name": ALL_MONITORS_GROUP_NAME}]
        return [_msp_group(groups[0], monitors, endpoint)]
    return [_msp_group(group, _members(group, monitors, endpoint), endpoint) for group in groups]


def _members(
    group: dict[str, Any], monitors: list[dict[str, Any]], endpoint: str
) -> list[dict[str, Any]]:
    group_id = _identifier(group, ("group_id",), endpoint, "group_id")
    listed = group.get("monitors")
    listed_ids = {str(value) for value in listed} if isinstance(listed, list) else set()
    members = []
    for monitor in monitors:
        group_ids = monitor.get("group_ids")
        in_group = isinstance(group_ids, list) and group_id in {str(value) for value in group_ids}
        monitor_id = monitor.get("monitor_id")
        if in_group or (monitor_id is not None and str(monitor_id) in listed_ids):
            members.append(monitor)
    return members


def _msp_group(group: dict[str, Any], members: list[dict[str, Any]], endpoint: str) -> GroupStatus:
    statuses = [parse_status(monitor.get("status")) for monitor in members]
    own = group.get("status")
    return GroupStatus(
        group_id=_identifier(group, ("group_id",), endpoint, "group_id"),
        name=_text(group, ("group_name", "display_name", "name")),
        status=worst_status(statuses) if own is None else parse_status(own),
        monitors=len(members),
        error_monitors=sum(status is not Status.UP for status in statuses),
        top_group=_top_group(group.get("top_group")),
    )
