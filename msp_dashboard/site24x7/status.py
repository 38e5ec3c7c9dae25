"""Site24x7 monitor status codes, and the one mapping from wire values to `Status`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import IntEnum


class Status(IntEnum):
    """A Site24x7 status code; anything the wire sends that is not listed is UNKNOWN."""

    DOWN = 0
    UP = 1
    TROUBLE = 2
    CRITICAL = 3
    SUSPENDED = 5
    MAINTENANCE = 7
    DISCOVERY = 9
    CONFIG_ERROR = 10
    UNKNOWN = -1

    @property
    def label(self) -> str:
        """Human label, e.g. "Configuration Error"."""
        return _LABELS[self]

    @property
    def slug(self) -> str:
        """CSS-friendly name, used as `status-<slug>`."""
        return _SLUGS[self]

    @property
    def severity(self) -> int:
        """Rank for worst-first ordering: lower is worse (DOWN is 0, UP is 8)."""
        return _SEVERITY[self]


_LABELS = {
    Status.DOWN: "Down",
    Status.UP: "Up",
    Status.TROUBLE: "Trouble",
    Status.CRITICAL: "Critical",
    Status.SUSPENDED: "Suspended",
    Status.MAINTENANCE: "Maintenance",
    Status.DISCOVERY: "Discovery",
    Status.CONFIG_ERROR: "Configuration Error",
    Status.UNKNOWN: "Unknown",
}
_SLUGS = {
    status: label.lower().replace("configuration ", "config-") for status, label in _LABELS.items()
}

STATUS_SEVERITY: tuple[Status, ...] = (
    Status.DOWN,
    Status.CRITICAL,
    Status.TROUBLE,
    Status.CONFIG_ERROR,
    Status.UNKNOWN,
    Status.MAINTENANCE,
    Status.DISCOVERY,
    Status.SUSPENDED,
    Status.UP,
)
"""Every status, worst first."""

_SEVERITY = {status: rank for rank, status in enumerate(STATUS_SEVERITY)}
_BY_CODE = {int(status): status for status in Status if status is not Status.UNKNOWN}


def parse_status(value: object) -> Status:
    """Map a wire value (int, numeric string such as " 2", or integral float) to a `Status`.

    Anything else (None, "abc", unlisted codes such as 4, booleans, 2.5) is `Status.UNKNOWN`.
    """
    code = _as_code(value)
    if code is None:
        return Status.UNKNOWN
    return _BY_CODE.get(code, Status.UNKNOWN)


def _as_code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = value.strip()
        if len(value) > 20:  # no status code is that long (and int() limits digit counts)
            return None
        if value.lstrip("+-").isdigit():
            return int(value)
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def worst_status(statuses: Iterable[Status]) -> Status:
    """The worst of `statuses` by severity; `Status.UNKNOWN` for an empty iterable.

    An empty input means "nothing is known", never "all is well", so it is not UP.
    """
    return min(statuses, key=lambda status: _SEVERITY[status], default=Status.UNKNOWN)
