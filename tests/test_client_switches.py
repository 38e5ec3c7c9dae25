"""The switches of issue 10: every status source with either auth generation and either
customer selector, over real HTTP against the simulator (its counters say what was sent);
`tokens.upstream` reading them; the MSP-wide call agreeing with per-customer current_status."""

import pytest
import requests
import responses
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from msp_dashboard.site24x7 import (
    CURRENT_STATUS,
    MONITOR_GROUPS_STATUS,
    Auth,
    AuthError,
    Site24x7Client,
    Status,
)
from portals.models import Customer
from tokens import upstream

TIMEOUT = (2.0, 5.0)


def sim_get(sim, path: str) -> dict:
    answer = requests.get(f"{sim.url}/_sim/{path}", timeout=5)
    answer.raise_for_status()
    return answer.json()


def sim_post(sim, path: str, payload: dict | None = None) -> dict:
    answer = requests.post(f"{sim.url}/_sim/{path}", json=payload or {}, timeout=5)
    answer.raise_for_status()
    return answer.json()


@pytest.fixture
def client(simulator):
    with Site24x7Client(
        "US", api_url=simulator.url, accounts_url=simulator.url, timeout=TIMEOUT
    ) as c:
        yield c


@pytest.fixture
def world(simulator, client):
    """One customer, its portal authtoken and an OAuth access token (counters reset after)."""
    creds = sim_get(simulator, "credentials")
    customer = sim_get(simulator, "customers")["customers"][1]
    portal_token = client.create_portal_authtoken(
        portal_id=customer["portal_id"], email=customer["email"], password=customer["password"]
    )
    tokens = client.exchange_grant_code(
        client_id=creds["client_id"], client_secret=creds["client_secret"], code=creds["grant_code"]
    )
    sim_post(simulator, "counters/reset")
    return {"customer": customer, "portal": portal_token, "access": tokens.access_token}


def _auth_and_ref(world, generation):
    if generation == "legacy":
        return Auth.legacy(world["portal"]), world["customer"]["zaid"]
    return Auth.oauth(world["access"]), world["customer"]["zaaid"]


COMBINATIONS = [
    (source, generation, via)
    for source in (MONITOR_GROUPS_STATUS, CURRENT_STATUS)
    for generation in ("legacy", "oauth")
    for via in ("param", "cookie")
]


@pytest.mark.parametrize(("source", "generation", "via"), COMBINATIONS)
def test_every_combination_sends_the_expected_request(
    simulator, client, world, source, generation, via
):
    auth, ref = _auth_and_ref(world, generation)

    groups = client.customer_status(source=source, auth=auth, customer_ref=ref, via=via)

    expected_groups = world["customer"]["groups"]
    assert [g.group_id for g in groups] == [g["group_id"] for g in expected_groups]
    assert [g.status for g in groups] == [Status(g["status"]) for g in expected_groups]
    counters = sim_get(simulator, "counters")
    other = CURRENT_STATUS if source == MONITOR_GROUPS_STATUS else MONITOR_GROUPS_STATUS
    assert counters["requests"][source] == 1
    assert counters["requests"][other] == 0
    selector = "zaid_via" if generation == "legacy" else "zaaid_via"
    unused = "zaaid_via" if generation == "legacy" else "zaid_via"
    assert counters[selector] == {via: 1, ("cookie" if via == "param" else "param"): 0}
    assert counters[unused] == {"param": 0, "cookie": 0}
    assert counters["by_customer"] == {world["customer"]["zaaid"]: {source: 1}}


def test_the_two_sources_agree_except_for_subgroups(client, world):
    auth, ref = _auth_and_ref(world, "oauth")
    by_groups = client.customer_status(
        source=MONITOR_GROUPS_STATUS, auth=auth, customer_ref=ref, via="cookie"
    )
    by_current = client.customer_status(
        source=CURRENT_STATUS, auth=auth, customer_ref=ref, via="cookie"
    )
    strip = [(g.group_id, g.name, g.status, g.monitors, g.error_monitors) for g in by_groups]
    assert strip == [
        (g.group_id, g.name, g.status, g.monitors, g.error_monitors) for g in by_current
    ]
    assert all(g.top_group for g in by_current)  # current_status knows no subgroups


def test_old_methods_are_the_default_combinations(simulator, client, world):
    customer = world["customer"]
    legacy = client.monitor_groups_status(authtoken=world["portal"], zaid=customer["zaid"])
    oauth = client.current_status(access_token=world["access"], zaaid=customer["zaaid"])
    assert legacy == client.customer_status(
        source=MONITOR_GROUPS_STATUS,
        auth=Auth.legacy(world["portal"]),
        customer_ref=customer["zaid"],
        via="param",
    )
    assert oauth == client.customer_status(
        source=CURRENT_STATUS,
        auth=Auth.oauth(world["access"]),
        customer_ref=customer["zaaid"],
        via="cookie",
    )
    counters = sim_get(simulator, "counters")
    assert counters["zaid_via"] == {"param": 2, "cookie": 0}
    assert counters["zaaid_via"] == {"param": 0, "cookie": 2}


def test_a_legacy_token_reads_only_its_own_customer_on_either_source(simulator, client, world):
    someone_else = sim_get(simulator, "customers")["customers"][2]
    for source in (MONITOR_GROUPS_STATUS, CURRENT_STATUS):
        with pytest.raises(AuthError) as info:
            client.customer_status(
                source=source,
                auth=Auth.legacy(world["portal"]),
                customer_ref=someone_else["zaid"],
                via="param",
            )
        assert info.value.http_status == 403


def test_bad_source_selector_and_auth_are_refused_before_any_request(simulator, client, world):
    auth, ref = _auth_and_ref(world, "oauth")
    with pytest.raises(ValueError, match="source"):
        client.customer_status(source="monitors", auth=auth, customer_ref=ref, via="cookie")
    with pytest.raises(ValueError, match="zaaid_via"):
        client.customer_status(source=CURRENT_STATUS, auth=auth, customer_ref=ref, via="header")
    with pytest.raises(ValueError, match="scheme"):
        Auth("Bearer", world["access"])
    assert sum(sim_get(simulator, "counters")["requests"].values()) == 0


def test_auth_repr_masks_the_token(world):
    auth = Auth.oauth(world["access"])
    assert world["access"] not in repr(auth)
    assert repr(auth).endswith(f"'••••{world['access'][-4:]}')")
    assert (auth.generation, Auth.legacy("x" * 20).generation) == ("oauth", "legacy")


# --- the MSP-wide call --------------------------------------------------------------------------


def test_msp_wide_call_equals_per_customer_current_status(simulator, client, world):
    customers = sim_get(simulator, "customers")["customers"]
    first = customers[0]
    sim_post(
        simulator,
        "status",
        {"customer": first["zaaid"], "group_id": first["groups"][0]["group_id"], "status": 0},
    )
    sim_post(simulator, "counters/reset")

    wide = client.msp_monitors_status(access_token=world["access"])
    each = {
        c["zaaid"]: client.current_status(access_token=world["access"], zaaid=c["zaaid"])
        for c in customers
    }

    assert wide == each
    assert wide[first["zaaid"]][0].status is Status.DOWN
    requests_made = sim_get(simulator, "counters")["requests"]
    assert requests_made["msp_monitors_status"] == 1
    assert requests_made["current_status"] == len(customers)


def test_msp_wide_call_uses_no_customer_selector(simulator, client, world):
    client.msp_monitors_status(access_token=world["access"])
    counters = sim_get(simulator, "counters")
    assert counters["zaaid_via"] == {"param": 0, "cookie": 0}
    assert counters["by_customer"] == {}


# --- tokens.upstream: the settings ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("generation", "names", "values", "expected"),
    [
        ("legacy", {}, {}, ("monitor_groups_status", "param")),
        ("oauth", {}, {}, ("current_status", "cookie")),
        (
            "legacy",
            {"SITE24X7_LEGACY_STATUS_SOURCE": "current_status", "SITE24X7_ZAID_VIA": "cookie"},
            {},
            ("current_status", "cookie"),
        ),
        (
            "oauth",
            {
                "SITE24X7_OAUTH_STATUS_SOURCE": "monitor_groups_status",
                "SITE24X7_ZAAID_VIA": "param",
            },
            {},
            ("monitor_groups_status", "param"),
        ),
    ],
)
def test_status_call_for_reads_the_switches(settings, generation, names, values, expected):
    for name, value in names.items():
        setattr(settings, name, value)
    source, via = upstream.status_call_for(generation)
    assert (source, via) == expected


def test_status_call_for_refuses_unknown_values(settings):
    with pytest.raises(ValueError, match="generation"):
        upstream.status_call_for("saml")
    settings.SITE24X7_ZAID_VIA = "header"
    with pytest.raises(ImproperlyConfigured, match="SITE24X7_ZAID_VIA"):
        upstream.status_call_for("legacy")


def _db_customer(data: dict, generation: str) -> Customer:
    return Customer.objects.create(
        name=data["name"],
        auth_generation=generation,
        portal_id=data["portal_id"],
        zaid=data["zaid"],
        zaaid=data["zaaid"],
        user_id=data["user_id"],
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("generation", "source", "via"),
    [
        ("legacy", "current_status", "cookie"),
        ("legacy", "monitor_groups_status", "param"),
        ("oauth", "monitor_groups_status", "cookie"),
        ("oauth", "current_status", "param"),
    ],
)
def test_status_call_fetch_follows_the_switches(
    settings, simulator, world, generation, source, via
):
    if generation == "legacy":
        settings.SITE24X7_LEGACY_STATUS_SOURCE, settings.SITE24X7_ZAID_VIA = source, via
    else:
        settings.SITE24X7_OAUTH_STATUS_SOURCE, settings.SITE24X7_ZAAID_VIA = source, via
    customer = _db_customer(world["customer"], generation)
    token = world["portal"] if generation == "legacy" else world["access"]
    call = upstream.status_call_for(customer.auth_generation)

    groups = call.fetch(upstream.get_client(customer.data_centre), customer=customer, token=token)

    assert len(groups) == len(world["customer"]["groups"])
    counters = sim_get(simulator, "counters")
    selector = "zaid_via" if generation == "legacy" else "zaaid_via"
    assert counters[selector][via] == 1
    assert counters["requests"][source] == 1
    assert sum(counters["requests"].values()) == 1


def test_call_budget_per_endpoint_falls_back_to_the_global_one(settings):
    settings.SITE24X7_CALL_BUDGET = 40
    settings.SITE24X7_CALL_BUDGETS = {"current_status": "12", " monitor_groups_status ": 30}
    assert upstream.call_budget_for("current_status") == 12
    assert upstream.call_budget_for("monitor_groups_status") == 30
    assert upstream.call_budget_for("msp_monitors_status") == 40
    settings.SITE24X7_CALL_BUDGETS = "current_status=7,portals=2"
    assert upstream.call_budget_for("portals") == 2
    settings.SITE24X7_CALL_BUDGETS = {}
    assert upstream.call_budget_for("current_status") == 40


def test_system_check_names_every_bad_switch(settings):
    assert not [m for m in run_checks() if m.id in ("tokens.E010", "tokens.W010")]
    settings.SITE24X7_OAUTH_STATUS_SOURCE = "current-status"
    settings.SITE24X7_ZAAID_VIA = "query"
    settings.SITE24X7_OAUTH_REFRESH_SOURCE = "wide"
    settings.SITE24X7_ACCEPT_VERSION = "two"
    settings.SITE24X7_CALL_BUDGETS = {"current_status": "many", "curent_status": "3"}
    messages = {m.msg for m in run_checks() if m.id == "tokens.E010"}
    assert any("SITE24X7_OAUTH_STATUS_SOURCE" in m for m in messages)
    assert any("SITE24X7_ZAAID_VIA" in m for m in messages)
    assert any("SITE24X7_OAUTH_REFRESH_SOURCE must be one of per_customer, msp_wide" in m
               for m in messages)  # fmt: skip
    assert any("SITE24X7_ACCEPT_VERSION" in m for m in messages)
    assert any("SITE24X7_CALL_BUDGETS" in m for m in messages)
    settings.SITE24X7_CALL_BUDGETS = {"curent_status": "3"}
    warnings = [m.msg for m in run_checks() if m.id == "tokens.W010"]
    assert warnings == ["SITE24X7_CALL_BUDGETS names unknown endpoints: curent_status"]


@responses.activate
def test_get_client_sends_the_configured_accept_version(settings):
    settings.SITE24X7_API_URL = "https://api.example.test"
    settings.SITE24X7_ACCOUNTS_URL = "https://accounts.example.test"
    settings.SITE24X7_ACCEPT_VERSION = "2.1"
    responses.get(
        "https://api.example.test/api/short/msp/customers",
        json={"code": 0, "message": "success", "data": []},
    )
    client = upstream.get_client("EU")
    assert client.accept_version == "2.1"
    assert client.list_msp_customers(access_token="1000.abcdef0123456789") == []
    assert responses.calls[0].request.headers["Accept"] == "application/json; version=2.1"
    settings.SITE24X7_ACCEPT_VERSION = "2.0"
    assert upstream.get_client("EU").accept_version == "2.0"
