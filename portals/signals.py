"""Signals other apps listen to, so that portals never imports them (dependencies point one
way: site24x7 <- tokens <- portals <- alerts).

- `customers_refreshed(items)`: refreshes wrote their outcomes; `items` is a list of
  `Refreshed(customer_id, ok, customer, groups)` (ok: fresh data stored; not ok: a failed
  attempt recorded, previous data kept): one item for a single refresh, several for a batch
  stored in one transaction. Sent after the transaction commits, never for a result that
  fencing ignored. `customer` is the row as written and `groups` the stored groups (ok only;
  else None), so receivers need not read them again (each refresh pays for every query). A
  receiver's error is logged, never raised into the refresh (send_robust).
- `grid_loading(request, filters, now)`: the grid is about to be built for a user; a
  receiver may return a callable `(customer, groups, freshness) -> portals.queries.Annotation
  | None` that adds badges, CSS classes and "quiet" (sorted below other problems) to rows.
  An annotation is part of the row cache's key (portals.queries.cached_entry).
- `grid_loaded(request, grid)`: the grid (page, live partial, JSON) was built; receivers may
  fill `grid.banners` and `grid.extensions` (template names the grid page includes).
- `customer_page_loaded(request, page)`: the customer page was built; receivers may add to
  `page.badges` and `page.panels` ({"template": ..., ...})."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger("portals.signals")

customers_refreshed = Signal()
grid_loading = Signal()
grid_loaded = Signal()
customer_page_loaded = Signal()


@dataclass(frozen=True)
class Refreshed:
    customer_id: int
    ok: bool
    customer: object = None  # the Customer row as written
    groups: list | None = None  # the stored GroupStatus list (ok only)


def _send_refreshed(items: list[Refreshed]) -> None:
    for receiver, result in customers_refreshed.send_robust(sender="portals", items=items):
        if isinstance(result, Exception):
            logger.error(
                "customers_refreshed receiver %s failed for customers %s: %s",
                getattr(receiver, "__qualname__", receiver),
                ",".join(str(item.customer_id) for item in items[:20]),
                type(result).__name__,
            )


def refreshed_on_commit(customer_id: int, *, ok: bool, customer=None, groups=None) -> None:
    """Send `customers_refreshed` for one customer once the current transaction commits (at
    once outside one)."""
    refreshed_many_on_commit([Refreshed(customer_id, ok, customer, groups)])


def refreshed_many_on_commit(items: list[Refreshed]) -> None:
    """Send `customers_refreshed` for several customers, once, after the commit."""
    if items:
        transaction.on_commit(lambda: _send_refreshed(items))


def grid_annotator(*, request, filters, now):
    """One callable from the `grid_loading` receivers' (None when there is none): badges
    and classes added up, quiet when any says so."""
    from .queries import Annotation

    responses = grid_loading.send(sender="portals", request=request, filters=filters, now=now)
    found = [response for _, response in responses if callable(response)]
    if not found:
        return None
    if len(found) == 1:
        return found[0]

    def annotate(customer, groups, freshness):
        notes = [n for n in (f(customer, groups, freshness) for f in found) if n]
        if not notes:
            return None
        return Annotation(
            badges=tuple(b for n in notes for b in n.badges),
            css=" ".join(n.css for n in notes if n.css),
            quiet=any(n.quiet for n in notes),
        )

    return annotate
