"""`manage.py refresh_customers`: refresh customers now, in this process (operators, cron).

Bypasses the due check and the circuit breaker's pause (like "refresh now"), not the lease
(a refresh running in a worker wins), the call budget or a throttle. No retries: one attempt
per customer; the background refresh retries."""

from concurrent.futures import ThreadPoolExecutor

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from portals.models import Customer
from portals.services import customer_refresh


class Command(BaseCommand):
    help = "Refresh the named customers (or --all active ones) now and print the outcomes."

    def add_arguments(self, parser):
        parser.add_argument("--customer", action="append", default=[], metavar="NAME_OR_ID")
        parser.add_argument("--all", action="store_true", help="every active customer")
        parser.add_argument("--workers", type=int, default=8, help="refreshes at once (8)")

    def handle(self, *args, **options):
        customers = self._select(options["customer"], options["all"])
        if options["workers"] <= 1:
            for customer in customers:
                self.stdout.write(_line(customer, _refresh(customer)))
            return
        with ThreadPoolExecutor(max_workers=options["workers"]) as pool:
            for customer, outcome in zip(customers, pool.map(_in_thread, customers), strict=True):
                self.stdout.write(_line(customer, outcome))

    def _select(self, wanted: list[str], everyone: bool) -> list[Customer]:
        if everyone:
            return list(Customer.objects.filter(is_active=True).order_by("name"))
        if not wanted:
            raise CommandError("name customers with --customer NAME_OR_ID, or pass --all")
        found = []
        for key in wanted:
            match = Customer.objects.filter(pk=int(key)) if key.isdigit() else None
            if not match:
                match = Customer.objects.filter(name__iexact=key)
            if not match:
                raise CommandError(f"no customer {key!r}")
            found.extend(match)
        return found


def _refresh(customer):
    return customer_refresh(customer_id=customer.pk, manual=True)


def _in_thread(customer):
    try:
        return _refresh(customer)
    finally:
        connections.close_all()  # this thread's own connections


def _line(customer, outcome) -> str:
    duration = f"{outcome.duration.total_seconds():.2f}s" if outcome.duration else "-"
    result = outcome.result + (f" ({outcome.reason})" if outcome.reason else "")
    groups = "-" if outcome.groups is None else str(outcome.groups)
    worst = outcome.worst_status.label if outcome.worst_status is not None else "-"
    return f"{customer.name}\t{result}\t{duration}\tgroups={groups}\tworst={worst}"
