"""Seeding for the grid and customer-page tests: many customers and groups in a few bulk
inserts (the query-count tests need 500 customers x 10 groups quickly)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from msp_dashboard.site24x7 import Status
from portals.models import Customer, MonitorGroup, StatusChange
from tokens.models import Credential, CredentialKind, CredentialOrigin, CredentialState

CYCLE = (
    Status.UP,
    Status.DOWN,
    Status.UP,
    Status.TROUBLE,
    Status.UP,
    Status.CRITICAL,
    Status.MAINTENANCE,
    Status.UP,
    Status.CONFIG_ERROR,
    Status.SUSPENDED,
    Status.DISCOVERY,
)


def make_customer(
    name: str,
    *,
    worst: Status = Status.UP,
    groups: list[tuple[str, Status]] | None = None,
    subgroups: list[tuple[str, Status]] | None = None,
    fetched: datetime | None | bool = True,
    token: str | None = "active",
    **fields,
) -> Customer:
    """One legacy customer with its groups; `fetched=True` means "just now", None never."""
    now = timezone.now()
    when = now if fetched is True else (fetched or None)
    customer = Customer.objects.create(
        name=name,
        auth_generation=fields.pop("auth_generation", "legacy"),
        portal_id=fields.pop("portal_id", f"p-{name}"),
        worst_status=int(worst),
        last_attempt_at=fields.pop("last_attempt_at", when),
        last_success_at=when,
        data_fetched_at=when,
        **fields,
    )
    rows = [(g, s, True) for g, s in (groups or [])] + [(g, s, False) for g, s in subgroups or []]
    MonitorGroup.objects.bulk_create(
        MonitorGroup(
            customer=customer,
            group_id=f"{customer.pk}-{i}",
            name=group_name,
            status=int(status),
            monitors=4,
            error_monitors=0 if status == Status.UP else 2,
            top_group=top,
        )
        for i, (group_name, status, top) in enumerate(rows)
    )
    if token:
        add_token(customer, state=token)
    return customer


def add_token(customer, *, state: str = "active", last4: str = "wxyz") -> Credential:
    """A credential row as the vault stores it (the grid never decrypts; no crypto needed)."""
    return Credential.objects.create(
        kind=CredentialKind.PORTAL_AUTHTOKEN,
        customer=customer,
        secret_ciphertext="v1:test:not-a-real-ciphertext",
        secret_last4=last4,
        fingerprint=f"fp{customer.pk}",
        state=state,
        origin=CredentialOrigin.IMPORTED,
    )


def seed_many(n: int, groups: int = 10, *, prefix: str = "Bulk") -> list[Customer]:
    """`n` fresh customers with `groups` top groups (+ one subgroup) and a token each, in
    four bulk inserts."""
    now = timezone.now()
    customers = Customer.objects.bulk_create(
        Customer(
            name=f"{prefix} {i:04d}",
            auth_generation="legacy",
            portal_id=f"{prefix}-{i}",
            worst_status=int(CYCLE[i % len(CYCLE)]),
            last_attempt_at=now,
            last_success_at=now,
            data_fetched_at=now,
        )
        for i in range(n)
    )
    if customers and customers[0].pk is None:  # backends that do not return ids
        customers = list(Customer.objects.filter(name__startswith=f"{prefix} ").order_by("name"))
    MonitorGroup.objects.bulk_create(
        MonitorGroup(
            customer=customer,
            group_id=f"{customer.pk}-{g}",
            name=f"Group {g:02d}",
            status=int(CYCLE[(i + g) % len(CYCLE)]),
            monitors=5,
            error_monitors=(i + g) % 3,
            top_group=g < groups,
        )
        for i, customer in enumerate(customers)
        for g in range(groups + 1)
    )
    Credential.objects.bulk_create(
        Credential(
            kind=CredentialKind.PORTAL_AUTHTOKEN,
            customer=customer,
            secret_ciphertext="v1:test:x",
            secret_last4="abcd",
            state=CredentialState.ACTIVE,
            origin=CredentialOrigin.IMPORTED,
        )
        for customer in customers
    )
    StatusChange.objects.bulk_create(
        StatusChange(
            customer=customer,
            group_id=f"{customer.pk}-0",
            group_name="Group 00",
            from_status=int(Status.UP),
            to_status=int(Status.DOWN),
            at=now - timedelta(hours=1),
        )
        for customer in customers
    )
    return customers
