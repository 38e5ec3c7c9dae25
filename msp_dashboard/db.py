"""Small database helpers shared by the apps."""

from collections.abc import Sequence

from django.db import models

BULK_ABOVE = 1
"""A single row is written with a plain UPDATE: Django's bulk_update builds a CASE per field
and row, costly in Python time, and a steady customer's refresh changes one row or none. More
rows take one bulk_update: one query whatever their number (PERF-02)."""


def rows_update(rows: Sequence[models.Model], fields: list[str]) -> None:
    """Write `fields` of each row (all of one model, already saved)."""
    if not rows:
        return
    manager = type(rows[0])._default_manager
    if len(rows) > BULK_ABOVE:
        manager.bulk_update(rows, fields, batch_size=500)
        return
    for row in rows:
        manager.filter(pk=row.pk).update(**{name: getattr(row, name) for name in fields})
