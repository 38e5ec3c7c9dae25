"""Site24x7Client against the bundled simulator over real HTTP on loopback.

The simulator is driven through its documented `/_sim/` control surface (site24x7_simulator).
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from urllib.parse import quote, quote_plus

import pytest
import requests
from requests.adapters import HTTPAdapter

from msp_dashboard.site24x7 import (
    AccessToken,
    AuthError,
    GroupStatus,
    LoginError,
    MintLimitError,
    NotFoundError,
    OAuthTokens,
    Portal,
    ResponseError,
    Site24x7Client,
    Site24x7Error,
    Status,
    ThrottledError,
    TokenLimitError,
    TransientError,
    UnknownTokenError,
    parse_status,
)

pytestmark = pytest.mark.integration
TIMEOUT = (2.0, 2.0)


@pytest.fixture(scope="module")
def sim():
    from site24x7_simulator import Simulator

    server = Simulator(customers=5, seed=1, port=0).start()
    yield server
    server.stop()


def ctl(sim, method: str, path: str, json: dict | None = None) -> dict:
    answer = requests.request(method, f"{sim.url}/_sim/{path}", json=json, timeout=5)
    answer.raise_for_status()
    return answer.json()


@pytest.fixture
def world(sim):
    """Seed state: customers and MSP credentials as the simulator reports them."""
    ctl(sim, "POST", "reset")
    return {
        "customers": ctl(sim, "GET", "customers")["customers"],
        **ctl(sim, "GET", "credentials"),
    }


@pytest.fixture
def client(sim):
    with Site24x7Client("US", api_url=sim.url, accounts_url=sim.url, timeout=TIMEOUT) as c:
        yield c


def fault(sim, kind: str, **spec) -> None:
    ctl(sim, "POST", "faults", {"kind": kind, **spec})


def legacy_groups(customer: dict) -> list[GroupStatus]:
    return [
        GroupStatus(
            g["group_id"],
            g["name"],
            parse_status(g["status"]),
            len(g["monitors"]),
            g["error_monitors"],
            g["top_group"],
        )
        for g in customer["groups"]
    ]


def oauth_groups(customer: dict) -> list[GroupStatus]:
    return [
        GroupStatus(g.group_id, g.name, g.status, g.monitors, g.error_monitors, True)
        for g in legacy_groups(customer)
    ]


def new_authtoken(client, customer: dict) -> str:
    return client.create_portal_authtoken(
        portal_id=customer["portal_id"], email=customer["email"], password=customer["password"]
    )


def oauth_tokens(client, world) -> OAuthTokens:
    return client.exchange_grant_code(
        client_id=world["client_id"], client_secret=world["client_secret"], code=world["grant_code"]
    )


def mint(client, world, refresh_token: str) -> AccessToken:
    return client.mint_access_token(
        client_id=world["client_id"],
        client_secret=world["client_secret"],
        refresh_token=refresh_token,
    )


# --- legacy client-portal authtokens -------------------------------------------------------------


def test_list_portals(client, world):
    portals = client.list_portals(msp_authtoken=world["msp_authtoken"])
    assert portals == [Portal(c["portal_id"], c["zaid"], c["name"]) for c in world["customers"]]


@pytest.mark.parametrize("via", ["param", "cookie"])
def test_monitor_groups_status_both_zaid_forms(sim, client, world, via):
    for customer in world["customers"][:3]:
        token = new_authtoken(client, customer)
        groups = client.monitor_groups_status(authtoken=token, zaid=customer["zaid"], zaid_via=via)
        assert groups == legacy_groups(customer)
    counters = ctl(sim, "GET", "counters")
    assert counters["zaid_via"][via] == 3 and counters["cookie_conflicts"] == 0


def test_status_change_is_seen(sim, client, world):
    customer = world["customers"][0]
    group = customer["groups"][0]
    ctl(
        sim,
        "POST",
        "status",
        {"customer": customer["zaaid"], "group_id": group["group_id"], "status": 0},
    )
    token = new_authtoken(client, customer)
    groups = client.monitor_groups_status(authtoken=token, zaid=customer["zaid"])
    assert groups[0].status is Status.DOWN and groups[0].error_monitors == 1


def test_delete_authtoken_then_unknown(client, world):
    customer = world["customers"][1]
    token = new_authtoken(client, customer)
    assert client.delete_portal_authtoken(portal_id=customer["portal_id"], authtoken=token) is None
    with pytest.raises(UnknownTokenError):
        client.delete_portal_authtoken(portal_id=customer["portal_id"], authtoken=token)
    with pytest.raises(AuthError):
        client.monitor_groups_status(authtoken=token, zaid=customer["zaid"])


def test_token_of_another_customer_is_refused(client, world):
    first, second = world["customers"][:2]
    token = new_authtoken(client, first)
    with pytest.raises(AuthError) as info:
        client.monitor_groups_status(authtoken=token, zaid=second["zaid"])
    assert info.value.http_status == 403 and info.value.code == 1100


def test_ten_token_cap(client, world):
    customer = world["customers"][2]
    tokens = {new_authtoken(client, customer) for _ in range(10)}
    assert len(tokens) == 10
    with pytest.raises(TokenLimitError):
        new_authtoken(client, customer)
    client.delete_portal_authtoken(portal_id=customer["portal_id"], authtoken=tokens.pop())
    assert new_authtoken(client, customer)


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"password": "wrong-password"}, "INVALID_PASSWORD"),
        ({"email": "nobody@example.invalid"}, "NO_SUCH_USER"),
        ({"portal_id": "999999999"}, "INVALID_PORTAL"),
    ],
)
def test_wrong_login_is_a_login_error(client, world, change, cause):
    customer = {**world["customers"][0], **change}
    with pytest.raises(LoginError) as info:
        new_authtoken(client, customer)
    assert info.value.code == cause and not isinstance(info.value, AuthError)


def test_bad_msp_authtoken(client):
    with pytest.raises(AuthError) as info:
        client.list_portals(msp_authtoken="not-the-msp-token")
    assert info.value.http_status == 401 and info.value.code == 1101


# --- OAuth ---------------------------------------------------------------------------------------


def test_oauth_flow(client, world):
    tokens = oauth_tokens(client, world)
    assert tokens.expires_in == 3600 and tokens.refresh_token and tokens.access_token
    access = mint(client, world, tokens.refresh_token)
    customers = client.list_msp_customers(access_token=access.token)
    assert [(c.name, c.zaaid, c.user_id) for c in customers] == [
        (c["name"], c["zaaid"], c["user_id"]) for c in world["customers"]
    ]
    by_zaaid = client.msp_monitors_status(access_token=access.token)
    assert by_zaaid == {c["zaaid"]: oauth_groups(c) for c in world["customers"]}
    assert client.revoke_refresh_token(refresh_token=tokens.refresh_token) is None
    with pytest.raises(UnknownTokenError):
        client.revoke_refresh_token(refresh_token=tokens.refresh_token)
    with pytest.raises(AuthError):
        mint(client, world, tokens.refresh_token)
    with pytest.raises(AuthError) as info:
        client.list_msp_customers(access_token=access.token)
    assert info.value.code == 1102


@pytest.mark.parametrize("via", ["cookie", "param"])
def test_current_status_both_zaaid_forms(sim, client, world, via):
    access = oauth_tokens(client, world).access_token
    for customer in world["customers"]:
        groups = client.current_status(access_token=access, zaaid=customer["zaaid"], zaaid_via=via)
        assert groups == oauth_groups(customer)
    counters = ctl(sim, "GET", "counters")
    assert counters["zaaid_via"][via] == 5 and counters["cookie_conflicts"] == 0


def test_mint_cap(sim, client, world):
    refresh = oauth_tokens(client, world).refresh_token
    for _ in range(10):
        assert mint(client, world, refresh).expires_in == 3600
    with pytest.raises(MintLimitError) as info:
        mint(client, world, refresh)
    assert isinstance(info.value, ThrottledError) and info.value.http_status == 400
    assert ctl(sim, "GET", "counters")["mints_refused"] == 1


def test_expires_in_milliseconds_is_capped(sim, client, world):
    ctl(sim, "POST", "oauth", {"expires_in_ms": True})
    tokens = oauth_tokens(client, world)
    assert tokens.expires_in == 3600
    assert mint(client, world, tokens.refresh_token).expires_in == 3600


@pytest.mark.parametrize("error_status", [200, 400])
def test_bad_oauth_credentials(sim, client, world, error_status):
    ctl(sim, "POST", "oauth", {"error_status": error_status})
    with pytest.raises(AuthError, match="invalid_client"):
        client.exchange_grant_code(client_id="nope", client_secret="nope", code=world["grant_code"])
    with pytest.raises(AuthError, match="invalid_code"):
        client.exchange_grant_code(
            client_id=world["client_id"], client_secret=world["client_secret"], code="1000.wrong"
        )


# --- cookie isolation over real HTTP -------------------------------------------------------------


def test_no_cookie_carries_over_between_customers(client, world):
    sent, set_by_server = [], []

    class Recording(HTTPAdapter):  # requests' own adapter, seeing what goes on the wire
        def send(self, request, *args, **kwargs):
            response = super().send(request, *args, **kwargs)
            sent.append(request.headers.get("Cookie"))
            set_by_server.append(response.headers.get("Set-Cookie"))
            return response

    client._transport.session().mount("http://", Recording())
    first, second = world["customers"][:2]
    access = oauth_tokens(client, world).access_token
    token_a, token_b = new_authtoken(client, first), new_authtoken(client, second)
    client.current_status(access_token=access, zaaid=first["zaaid"])
    client.monitor_groups_status(authtoken=token_a, zaid=first["zaid"], zaid_via="cookie")
    assert client.current_status(access_token=access, zaaid=second["zaaid"]) == oauth_groups(second)
    client.current_status(access_token=access, zaaid=second["zaaid"], zaaid_via="param")
    assert client.monitor_groups_status(authtoken=token_b, zaid=second["zaid"]) == legacy_groups(
        second
    )
    client.list_msp_customers(access_token=access)
    assert set_by_server[3] == f"zaaid={first['zaaid']}; Path=/"
    assert set_by_server[4] == f"clientportal={first['zaid']}; Path=/"
    assert sent[3:] == [
        f"zaaid={first['zaaid']}",
        f"clientportal={first['zaid']}",
        f"zaaid={second['zaaid']}",
        None,
        None,
        None,
    ]
    assert len(client._transport.session().cookies) == 0


# --- faults --------------------------------------------------------------------------------------

FAULTS = [
    ("current_status", {"kind": "status", "http_status": 500}, TransientError),
    ("current_status", {"kind": "status", "http_status": 503}, TransientError),
    ("current_status", {"kind": "status", "http_status": 401}, AuthError),
    ("current_status", {"kind": "status", "http_status": 403}, AuthError),
    ("current_status", {"kind": "status", "http_status": 404}, NotFoundError),
    ("current_status", {"kind": "status", "http_status": 400}, ResponseError),
    ("current_status", {"kind": "html"}, TransientError),
    ("current_status", {"kind": "html", "http_status": 200}, ResponseError),
    ("current_status", {"kind": "malformed"}, ResponseError),
    ("current_status", {"kind": "reset"}, TransientError),
    ("current_status", {"kind": "invalid_token"}, AuthError),
    ("monitor_groups_status", {"kind": "invalid_token"}, AuthError),
    ("monitor_groups_status", {"kind": "malformed"}, ResponseError),
    ("monitor_groups_status", {"kind": "status", "http_status": 502}, TransientError),
    ("authtoken_create", {"kind": "malformed"}, ResponseError),
    ("authtoken_create", {"kind": "html"}, TransientError),
    ("authtoken_delete", {"kind": "invalid_token"}, UnknownTokenError),
    ("oauth_token", {"kind": "malformed"}, ResponseError),
    ("oauth_token", {"kind": "invalid_token"}, AuthError),
    ("oauth_token", {"kind": "reset"}, TransientError),
    ("oauth_revoke", {"kind": "invalid_token"}, UnknownTokenError),
    ("short_customers", {"kind": "status", "http_status": 500}, TransientError),
    ("msp_monitors_status", {"kind": "html", "http_status": 404}, NotFoundError),
    ("portals", {"kind": "invalid_token"}, AuthError),
]


def call_endpoint(client, world, endpoint: str):
    """Prepare credentials (before any fault), then return the call that hits `endpoint`."""
    customer = world["customers"][0]
    token = new_authtoken(client, customer)
    tokens = oauth_tokens(client, world)
    calls = {
        "current_status": lambda: client.current_status(
            access_token=tokens.access_token, zaaid=customer["zaaid"]
        ),
        "monitor_groups_status": lambda: client.monitor_groups_status(
            authtoken=token, zaid=customer["zaid"]
        ),
        "authtoken_create": lambda: new_authtoken(client, customer),
        "authtoken_delete": lambda: client.delete_portal_authtoken(
            portal_id=customer["portal_id"], authtoken=token
        ),
        "oauth_token": lambda: mint(client, world, tokens.refresh_token),
        "oauth_revoke": lambda: client.revoke_refresh_token(refresh_token=tokens.refresh_token),
        "short_customers": lambda: client.list_msp_customers(access_token=tokens.access_token),
        "msp_monitors_status": lambda: client.msp_monitors_status(access_token=tokens.access_token),
        "portals": lambda: client.list_portals(msp_authtoken=world["msp_authtoken"]),
    }
    return calls[endpoint]


@pytest.mark.parametrize(("endpoint", "spec", "error"), FAULTS)
def test_fault_maps_to_error_type(sim, client, world, endpoint, spec, error):
    call = call_endpoint(client, world, endpoint)
    fault(sim, endpoint=endpoint, count=1, **spec)
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error
    assert info.value.__context__ is None
    call()  # the fault was used up: the next call succeeds


def test_429_with_retry_after(sim, client, world):
    call = call_endpoint(client, world, "current_status")
    fault(sim, "status", endpoint="current_status", http_status=429, retry_after=7, count=1)
    with pytest.raises(ThrottledError) as info:
        call()
    assert info.value.retry_after == 7.0 and info.value.code == 1003


def test_throttle_window(sim, client, world):
    call = call_endpoint(client, world, "current_status")
    fault(sim, "throttle", endpoint="current_status", calls=2, window_s=60, lock_s=30)
    call()
    call()
    with pytest.raises(ThrottledError) as info:
        call()
    assert info.value.retry_after == 30.0


def test_hang_becomes_transient_error_within_timeout(sim, world):
    client = Site24x7Client("US", api_url=sim.url, accounts_url=sim.url, timeout=(1.0, 0.5))
    call = call_endpoint(client, world, "current_status")
    fault(sim, "hang", endpoint="current_status", count=1, hang_s=5)
    started = time.monotonic()
    with pytest.raises(TransientError, match="did not answer in time"):
        call()
    assert time.monotonic() - started < 1.5
    ctl(sim, "POST", "faults/clear")
    assert call() == oauth_groups(world["customers"][0])
    client.close()


def test_fault_for_one_customer_only(sim, client, world):
    first, second = world["customers"][:2]
    access = oauth_tokens(client, world).access_token
    fault(sim, "status", customer=first["zaaid"], endpoint="current_status", http_status=500)
    with pytest.raises(TransientError):
        client.current_status(access_token=access, zaaid=first["zaaid"])
    assert client.current_status(access_token=access, zaaid=second["zaaid"]) == oauth_groups(second)


def test_connections_are_reused(sim, client, world):
    access = oauth_tokens(client, world).access_token
    ctl(sim, "POST", "counters/reset")
    for customer in world["customers"] * 4:
        client.current_status(access_token=access, zaaid=customer["zaaid"])
    counters = ctl(sim, "GET", "counters")
    assert counters["requests"]["current_status"] == 20
    assert counters["connections"] == 1


def test_the_adapter_keeps_each_origins_pool_and_closing_it_closes_them(sim, client, world):
    """PooledAdapter keeps each origin's connection pool at hand (one connection for many
    calls: test_connections_are_reused); closing the adapter (Transport.close) closes every
    pool it kept."""
    access = oauth_tokens(client, world).access_token
    first = world["customers"][0]
    client.current_status(access_token=access, zaaid=first["zaaid"])
    adapter = client._transport.session().get_adapter(sim.url)
    (kept,) = adapter._pools.values()
    assert client.current_status(access_token=access, zaaid=first["zaaid"]) == oauth_groups(first)
    assert list(adapter._pools.values()) == [kept]
    adapter.close()
    assert kept.pool is None and adapter._pools == {}


# --- canary: no secret in any log record at DEBUG ------------------------------------------------


def forms(secret: str) -> set[str]:
    raw = secret.encode()
    encoded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return {secret, quote(secret, safe=""), quote_plus(secret), *encoded}


def test_no_secret_in_debug_logs(sim, client, world, caplog):
    for name in (None, "urllib3", "requests", "msp_dashboard"):
        caplog.set_level(logging.DEBUG, logger=name)
    canary = f"CANARY-{uuid.uuid4()}"
    customer = world["customers"][0]
    secrets = [canary, world["msp_authtoken"], world["client_secret"], world["grant_code"]]
    secrets.append(customer["password"])
    errors: list[Site24x7Error] = []
    results: list[object] = []

    def run(call):
        try:
            results.append(call())
        except Site24x7Error as exc:
            errors.append(exc)

    token = new_authtoken(client, customer)
    tokens = oauth_tokens(client, world)
    access = mint(client, world, tokens.refresh_token)
    secrets += [token, tokens.refresh_token, tokens.access_token, access.token]
    run(lambda: client.list_portals(msp_authtoken=world["msp_authtoken"]))
    run(lambda: client.list_portals(msp_authtoken=canary))
    run(lambda: client.monitor_groups_status(authtoken=canary, zaid=customer["zaid"]))
    run(
        lambda: client.create_portal_authtoken(
            portal_id=customer["portal_id"], email=customer["email"], password=canary
        )
    )
    run(lambda: client.delete_portal_authtoken(portal_id=customer["portal_id"], authtoken=canary))
    run(
        lambda: client.exchange_grant_code(
            client_id=world["client_id"], client_secret=canary, code=canary
        )
    )
    run(lambda: mint(client, world, canary))
    run(lambda: client.revoke_refresh_token(refresh_token=canary))
    run(lambda: client.current_status(access_token=canary, zaaid=customer["zaaid"]))
    run(lambda: client.msp_monitors_status(access_token=access.token))
    for kind in ("malformed", "html", "reset", "invalid_token"):
        fault(sim, kind, count=9)
        run(lambda: client.current_status(access_token=access.token, zaaid=customer["zaaid"]))
        run(lambda: client.monitor_groups_status(authtoken=token, zaid=customer["zaid"]))
        run(lambda: mint(client, world, tokens.refresh_token))
        run(lambda: new_authtoken(client, customer))
        ctl(sim, "POST", "faults/clear")
    assert len(errors) >= 20 and any(r.name.startswith("urllib3") for r in caplog.records)
    texts = [caplog.text] + [r.getMessage() for r in caplog.records]
    texts += [text for exc in errors for text in (str(exc), repr(exc), repr(exc.args))]
    texts += [repr(result) for result in results]
    leaked = [
        form for secret in secrets for form in forms(secret) for text in texts if form in text
    ]
    assert not leaked
