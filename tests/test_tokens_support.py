"""Fixtures and helpers shared by the credential-vault tests (imported by name; no tests)."""

import uuid

import pytest
import requests

from portals.models import Customer
from tests.roles_support import TOKEN_MANAGER, make_user


def sim_get(sim, path: str) -> dict:
    response = requests.get(f"{sim.url}/_sim/{path}", timeout=5)
    response.raise_for_status()
    return response.json()


def sim_post(sim, path: str, payload: dict | None = None) -> dict:
    response = requests.post(f"{sim.url}/_sim/{path}", json=payload or {}, timeout=5)
    response.raise_for_status()
    return response.json()


def sim_calls(sim, endpoint: str) -> int:
    return sim_get(sim, "counters")["requests"].get(endpoint, 0)


def sim_tokens(sim, zaaid: str) -> list[str]:
    return sim_get(sim, "tokens")["tokens"].get(zaaid, [])


def canary() -> str:
    return f"CANARY-{uuid.uuid4()}"


def customer_from_sim(data: dict) -> Customer:
    return Customer.objects.create(
        name=data["name"],
        auth_generation="legacy",
        portal_id=data["portal_id"],
        zaid=data["zaid"],
        zaaid=data["zaaid"],
        user_id=data["user_id"],
    )


@pytest.fixture
def sim_customers(simulator):
    return sim_get(simulator, "customers")["customers"]


@pytest.fixture
def sim_creds(simulator):
    return sim_get(simulator, "credentials")


@pytest.fixture
def sim_customer(sim_customers):
    """The first simulated customer's data (name, portal_id, zaid, email, password, ...)."""
    return sim_customers[0]


@pytest.fixture
def customer(db, sim_customer):
    return customer_from_sim(sim_customer)


@pytest.fixture
def manager(db, django_user_model):
    return make_user("manager", TOKEN_MANAGER)


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client
