"""Small database helpers shared by the apps."""

import json
from collections.abc import Sequence
from typing import Any

from django.db import models

PLAIN_UPDATES = 3
"""Rows whose changes are alike (the same fields set to the same values) are written with one
plain `UPDATE ... WHERE id IN (...)`; up to this many such sets are written so. Beyond it, one
bulk_update of the changed fields only: Django builds a CASE per field and row there, which
costs far more Python time than a plain UPDATE, so it is kept for rare, scattered changes.
Either way the number of queries does not grow with the number of rows (PERF-02)."""


def rows_write(changes: Sequence[tuple[models.Model, dict[str, Any]]]) -> int:
    """Write each row's changed fields ({name: new value}, already set on the row); rows of
    one model. Returns the number of queries run."""
    changes = [(row, values) for row, values in changes if values]
    for row, values in changes:  # bulk_update reads the rows: they must hold the values
        if any(getattr(row, name) != value for name, value in values.items()):
            raise ValueError(f"rows_write: set {sorted(values)} on the {type(row).__name__}")
    if not changes:
        return 0
    manager = type(changes[0][0])._default_manager
    alike: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    for row, values in changes:
        key = json.dumps(values, sort_keys=True, default=str)
        alike.setdefault(key, (values, []))[1].append(row.pk)
    if len(alike) <= PLAIN_UPDATES:
        for values, pks in alike.values():
            manager.filter(pk__in=pks).update(**values)
        return len(alike)
    fields = sorted({name for _, values in changes for name in values})
    manager.bulk_update([row for row, _ in changes], fields, batch_size=500)
    return 1


def changed_fields(obj: models.Model, values: dict[str, Any]) -> dict[str, Any]:
    """Set on `obj` the values that differ from what it holds; those values."""
    diff = {name: value for name, value in values.items() if getattr(obj, name) != value}
    for name, value in diff.items():
        setattr(obj, name, value)
    return diff
