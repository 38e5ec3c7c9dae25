"""The Site24x7 simulator's own rules, over real HTTP on loopback (no Django needed)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from site24x7_simulator import Simulator

TIMEOUT = 5
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server():
    sim = Simulator(customers=12, seed=5).start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(server):
    """The module's simulator, back in its seed state."""
    requests.post(f"{server.url}/_sim/reset", timeout=TIMEOUT).raise_for_status()
    return server


# -- helpers --------------------------------------------------------------------------------


def ctl(sim, method: str, path: str, payload=None):
    answer = requests.request(method, f"{sim.url}/_sim/{path}", json=payload, timeout=TIMEOUT)
    answer.raise_for_status()
    return answer.json()


def customers(sim) -> list[dict]:
    return ctl(sim, "GET", "customers")["customers"]


def creds(sim) -> dict:
    return ctl(sim, "GET", "credentials")


def create_authtoken(sim, customer, **overrides):
    params = {
        "portal": customer["portal_id"],
        "email": customer["email"],
        "password": customer["password"],
        "client_portal": "true",
        "scopes": "Site24x7/site24x7api",
        "desc": "api",
        "grant_type": "password",
        **overrides,
    }
    return requests.post(f"{sim.url}/accounts/client/authtoken", data=params, timeout=TIMEOUT)


def authtoken(sim, customer) -> str:
    answer = create_authtoken(sim, customer)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["token"]


def delete_authtoken(sim, customer, token):
    data = {"portal": customer["portal_id"], "authtoken": token}
    return requests.post(f"{sim.url}/accounts/client/authtoken/delete", data=data, timeout=TIMEOUT)


def groups_status(sim, token, zaid=None, cookie=None, session=requests):
    headers = {
        "Authorization": f"Zoho-authtoken {token}",
        "Accept": "application/json; version=2.0",
    }
    if cookie:
        headers["Cookie"] = f"clientportal={cookie}"
    params = {"zaid": zaid} if zaid else None
    url = f"{sim.url}/api/monitor_groups/status"
    return session.get(url, params=params, headers=headers, timeout=TIMEOUT)


def oauth(sim, **params):
    return requests.post(f"{sim.url}/oauth/v2/token", data=params, timeout=TIMEOUT)


def exchange(sim) -> dict:
    c = creds(sim)
    answer = oauth(
        sim,
        grant_type="authorization_code",
        client_id=c["client_id"],
        client_secret=c["client_secret"],
        code=c["grant_code"],
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def mint(sim, refresh_token):
    c = creds(sim)
    return oauth(
        sim,
        grant_type="refresh_token",
        client_id=c["client_id"],
        client_secret=c["client_secret"],
        refresh_token=refresh_token,
    )


def access_token(sim) -> str:
    return exchange(sim)["access_token"]


def current_status(sim, token, zaaid=None, via="cookie", session=requests, timeout=TIMEOUT):
    headers = {"Authorization": f"Zoho-oauthtoken {token}"}
    params = {"group_required": "true"}
    if zaaid and via == "cookie":
        headers["Cookie"] = f"zaaid={zaaid}"
    elif zaaid:
        params["zaaid"] = zaaid
    url = f"{sim.url}/api/current_status"
    return session.get(url, params=params, headers=headers, timeout=timeout)


def oauth_get(sim, path, token, **kwargs):
    headers = {"Authorization": f"Zoho-oauthtoken {token}"}
    return requests.get(f"{sim.url}{path}", headers=headers, timeout=TIMEOUT, **kwargs)


def portals(sim, token=None, timeout=TIMEOUT):
    headers = {"Authorization": f"Zoho-authtoken {token}"} if token else {}
    url = f"{sim.url}/api/msp/customers/portals"
    return requests.get(url, headers=headers, timeout=timeout)


def fault(sim, **spec) -> str:
    return ctl(sim, "POST", "faults", spec)["id"]


def counters(sim) -> dict:
    return ctl(sim, "GET", "counters")


def with_groups(sim, minimum=2) -> dict:
    return next(c for c in customers(sim) if len(c["groups"]) >= minimum)


# -- data set -------------------------------------------------------------------------------


def test_same_seed_gives_same_customers(sim):
    again = Simulator(customers=12, seed=5)
    other = Simulator(customers=12, seed=6)
    assert again.customers() == customers(sim)
    assert other.customers() != customers(sim)
    assert Simulator(customers=3, seed=5).customers() == customers(sim)[:3]
    assert again.credentials() == creds(sim)


def test_customer_fields_look_real(sim):
    people = Simulator(customers=40, seed=5).customers()
    assert len({c["name"] for c in people}) == 40
    for c in people:
        assert re.fullmatch(r"\d{11}", c["portal_id"])
        assert re.fullmatch(r"\d{9}", c["zaaid"])
        assert c["user_id"].isdigit()
        assert len(base64.b64decode(c["zaid"])) == 16
        assert 1 <= len(c["groups"]) <= 15
        for group in c["groups"]:
            assert re.fullmatch(r"\d{14,}", group["group_id"])
            assert 1 <= len(group["monitors"]) <= 8
    groups = [g for c in people for g in c["groups"]]
    assert any(not g["top_group"] for g in groups)
    assert {0, 1, 2} <= {m["status"] for g in groups for m in g["monitors"]}
    c = creds(sim)
    assert re.fullmatch(r"1000\.[A-Z0-9]{30}", c["client_id"])


# -- legacy authtokens ------------------------------------------------------------------------


def test_portals_needs_the_msp_authtoken(sim):
    for answer in (portals(sim), portals(sim, "bogus")):
        assert answer.status_code == 401
        assert answer.json() == {
            "error_code": 1101,
            "message": "Invalid value passed for authtoken.",
        }
    answer = portals(sim, creds(sim)["msp_authtoken"])
    assert answer.status_code == 200
    body = answer.json()
    assert body["code"] == 0 and body["message"] == "success"
    first = body["data"][0]
    assert set(first) == {"portal_id", "zaid", "name", "portal_name"}
    assert [p["zaid"] for p in body["data"]] == [c["zaid"] for c in customers(sim)]
    customer_token = authtoken(sim, customers(sim)[0])
    assert portals(sim, customer_token).status_code == 403


def test_monitor_groups_status_by_zaid_param_and_cookie(sim):
    customer = with_groups(sim)
    token = authtoken(sim, customer)
    by_param = groups_status(sim, token, zaid=customer["zaid"])
    by_cookie = groups_status(sim, token, cookie=customer["zaid"])
    assert by_param.status_code == by_cookie.status_code == 200
    assert by_param.json() == by_cookie.json()
    data = by_param.json()["data"]
    assert [g["group_id"] for g in data] == [g["group_id"] for g in customer["groups"]]
    assert set(data[0]) == {
        "group_name",
        "group_id",
        "monitors",
        "status",
        "error_monitors",
        "top_group",
    }
    assert by_param.headers["Set-Cookie"] == f"clientportal={customer['zaid']}; Path=/"
    assert counters(sim)["zaid_via"] == {"param": 1, "cookie": 1}


def test_unencoded_plus_in_zaid_is_accepted(sim):
    customer = next(c for c in customers(sim) if "+" in c["zaid"])
    token = authtoken(sim, customer)
    url = f"{sim.url}/api/monitor_groups/status?zaid={customer['zaid']}"  # '+' not escaped
    answer = requests.get(url, headers={"Authorization": f"Zoho-authtoken {token}"}, timeout=5)
    assert answer.status_code == 200


def test_another_customers_zaid_is_forbidden(sim):
    first, second = customers(sim)[:2]
    token = authtoken(sim, first)
    forbidden = {"error_code": 1100, "message": "You are not authorized to perform this operation"}
    for answer in (groups_status(sim, token, zaid=second["zaid"]), groups_status(sim, token)):
        assert answer.status_code == 403
        assert answer.json() == forbidden
    assert groups_status(sim, "nope", zaid=first["zaid"]).status_code == 401


def test_authtoken_cap_delete_frees_a_slot(sim):
    customer = customers(sim)[0]
    tokens = [authtoken(sim, customer) for _ in range(10)]
    assert all(t.startswith(customer["portal_id"] + ".") for t in tokens)
    refused = create_authtoken(sim, customer)
    assert refused.status_code == 400
    assert refused.json()["data"] == {
        "response": False,
        "cause": "EXCEEDED_MAXIMUM_ALLOWED_AUTHTOKENS",
    }
    assert ctl(sim, "GET", "tokens")["tokens"] == {customer["zaaid"]: tokens}
    deleted = delete_authtoken(sim, customer, tokens[0])
    assert deleted.json() == {"t": "json", "data": {"response": True}}
    assert groups_status(sim, tokens[0], zaid=customer["zaid"]).status_code == 401
    assert groups_status(sim, tokens[1], zaid=customer["zaid"]).status_code == 200
    assert delete_authtoken(sim, customer, tokens[0]).json()["data"]["cause"] == "INVALID_AUTHTOKEN"
    assert create_authtoken(sim, customer).status_code == 200


def test_authtoken_create_errors_and_query_string(sim):
    customer = customers(sim)[0]

    def cause(**overrides):
        return create_authtoken(sim, customer, **overrides).json()["data"]["cause"]

    assert cause(password="wrong") == "INVALID_PASSWORD"
    assert cause(email="nobody@example.com") == "NO_SUCH_USER"
    assert cause(portal="99999999999") == "INVALID_PORTAL"
    assert cause(password="") == "MISSING_PARAMETER"
    query = {"portal": customer["portal_id"], "email": customer["email"]}
    query.update(password=customer["password"], client_portal="true", grant_type="password")
    url = f"{sim.url}/accounts/client/authtoken"
    answer = requests.post(url, params=query, timeout=TIMEOUT)
    assert answer.status_code == 200 and answer.json()["t"] == "json"


# -- OAuth ------------------------------------------------------------------------------------


def test_oauth_exchange_mint_and_cap(sim):
    first = exchange(sim)
    assert first["token_type"] == "Bearer" and first["expires_in"] == 3600
    assert first["access_token"].startswith("1000.") and first["refresh_token"].startswith("1000.")
    answers = [mint(sim, first["refresh_token"]) for _ in range(11)]
    assert [a.status_code for a in answers] == [200] * 10 + [400]
    assert "refresh_token" not in answers[0].json()
    assert answers[-1].json()["error"] == "Access Denied"
    assert "too many requests" in answers[-1].json()["error_description"]
    fresh = exchange(sim)  # the cap is per refresh token
    assert mint(sim, fresh["refresh_token"]).status_code == 200
    seen = counters(sim)
    assert (seen["mints"], seen["mints_refused"], seen["exchanges"]) == (11, 1, 2)


def test_oauth_bad_client_and_code(sim):
    c = creds(sim)
    bad_client = oauth(
        sim, grant_type="authorization_code", client_id="1000.X", client_secret="y", code="z"
    )
    assert bad_client.json() == {"error": "invalid_client"}
    bad_code = oauth(
        sim,
        grant_type="authorization_code",
        client_id=c["client_id"],
        client_secret=c["client_secret"],
        code="1000.nope",
    )
    assert bad_code.json() == {"error": "invalid_code"}
    assert mint(sim, "1000.unknown").json() == {"error": "invalid_code"}


def test_oauth_revoke_kills_refresh_and_access_tokens(sim):
    tokens = exchange(sim)
    minted = mint(sim, tokens["refresh_token"]).json()["access_token"]
    assert oauth_get(sim, "/api/short/msp/customers", minted).status_code == 200
    url = f"{sim.url}/oauth/v2/token/revoke"
    revoked = requests.post(url, data={"token": tokens["refresh_token"]}, timeout=TIMEOUT)
    assert revoked.json() == {"status": "success"}
    for token in (minted, tokens["access_token"]):
        answer = oauth_get(sim, "/api/short/msp/customers", token)
        assert answer.status_code == 401
        assert answer.json() == {
            "error_code": 1102,
            "message": "OAuth Access Token is invalid or has expired.",
        }
    assert mint(sim, tokens["refresh_token"]).json() == {"error": "invalid_code"}
    again = requests.post(url, params={"token": tokens["refresh_token"]}, timeout=TIMEOUT)
    assert again.status_code == 400
    assert again.json() == {"status": "failure", "error": "invalid_token"}


def test_oauth_expires_in_milliseconds_and_forced_expiry(sim):
    ctl(sim, "POST", "oauth", {"expires_in_ms": True})
    tokens = exchange(sim)
    assert tokens["expires_in"] == 3_600_000
    ctl(sim, "POST", "oauth", {"expire_access_tokens": True})
    assert oauth_get(sim, "/api/short/msp/customers", tokens["access_token"]).status_code == 401


# -- OAuth API ----------------------------------------------------------------------------


def test_current_status_shape(sim):
    customer = with_groups(sim)
    answer = current_status(sim, access_token(sim), customer["zaaid"])
    assert answer.status_code == 200
    assert answer.headers["Set-Cookie"] == f"zaaid={customer['zaaid']}; Path=/"
    body = answer.json()
    assert (body["code"], body["message"]) == (0, "success")
    groups = body["data"]["monitor_groups"]
    assert [g["group_id"] for g in groups] == [g["group_id"] for g in customer["groups"]]
    expected = {g["group_id"]: g["status"] for g in customer["groups"]}
    for group in groups:
        assert set(group) == {"group_id", "group_name", "status", "monitors"}
        assert group["status"] == expected[group["group_id"]]
        for monitor in group["monitors"]:
            assert {"monitor_id", "name", "monitor_type", "status", "last_polled_time"} <= set(
                monitor
            )
            assert re.fullmatch(
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000", monitor["last_polled_time"]
            )
    total = sum(len(g["monitors"]) for g in customer["groups"])
    assert len(body["data"]["monitors"]) == total


def test_current_status_zaaid_param_auth_and_forbidden(sim):
    customer = customers(sim)[0]
    token = access_token(sim)
    assert current_status(sim, token, customer["zaaid"], via="param").status_code == 200
    assert counters(sim)["zaaid_via"] == {"cookie": 0, "param": 1}
    missing = current_status(sim, token)
    assert missing.status_code == 403 and missing.json()["error_code"] == 1100
    assert current_status(sim, token, "123456789").status_code == 403
    bad = current_status(sim, "1000.bad", customer["zaaid"])
    assert bad.status_code == 401 and bad.json()["error_code"] == 1102
    legacy = requests.get(
        f"{sim.url}/api/current_status",
        headers={
            "Authorization": f"Zoho-authtoken {token}",
            "Cookie": f"zaaid={customer['zaaid']}",
        },
        timeout=TIMEOUT,
    )
    assert legacy.status_code == 401 and legacy.json()["error_code"] == 1101


def test_short_customers_and_msp_monitors_status(sim):
    token = access_token(sim)
    people = customers(sim)
    short = oauth_get(sim, "/api/short/msp/customers", token).json()["data"]
    assert short == [
        {"name": c["name"], "zaaid": c["zaaid"], "user_id": c["user_id"]} for c in people
    ]
    wide = oauth_get(sim, "/api/msp/customers/monitors/status", token).json()["data"]
    assert [w["zaaid"] for w in wide] == [c["zaaid"] for c in people]
    first = wide[0]
    assert first["customer_name"] == people[0]["name"]
    assert {"monitor_id", "name", "status", "last_polled_time", "group_ids"} == set(
        first["monitors"][0]
    )
    assert {"group_id", "group_name", "status"} == set(first["monitor_groups"][0])
    assert oauth_get(sim, "/api/msp/customers/monitors/status", "1000.bad").status_code == 401


def test_set_status_shows_on_every_view(sim):
    customer = with_groups(sim)
    group_id = customer["groups"][1]["group_id"]
    answer = ctl(
        sim, "POST", "status", {"customer": customer["name"], "group_id": group_id, "status": 0}
    )
    assert answer["group"]["status"] == 0
    legacy = groups_status(sim, authtoken(sim, customer), zaid=customer["zaid"]).json()["data"]
    row = next(g for g in legacy if g["group_id"] == group_id)
    assert (row["status"], row["error_monitors"]) == (0, 1)
    token = access_token(sim)
    oauth_groups = current_status(sim, token, customer["zaaid"]).json()["data"]["monitor_groups"]
    group = next(g for g in oauth_groups if g["group_id"] == group_id)
    assert group["status"] == 0
    assert sum(m["status"] != 1 for m in group["monitors"]) == 1
    wide = oauth_get(sim, "/api/msp/customers/monitors/status", token).json()["data"]
    mine = next(w for w in wide if w["zaaid"] == customer["zaaid"])
    assert next(g for g in mine["monitor_groups"] if g["group_id"] == group_id)["status"] == 0
    sim.set_status(customer["zaaid"], group_id, 1)
    legacy = groups_status(sim, authtoken(sim, customer), zaid=customer["zaid"]).json()["data"]
    row = next(g for g in legacy if g["group_id"] == group_id)
    assert (row["status"], row["error_monitors"]) == (1, 0)


def test_drift_moves_statuses(sim):
    before = customers(sim)
    changes = ctl(sim, "POST", "drift", {"steps": 30})["changes"]
    assert changes and customers(sim) != before
    with Simulator(customers=12, seed=5, drift_seconds=0.05) as lively:
        initial = lively.customers()
        deadline = time.monotonic() + 3
        while lively.customers() == initial and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lively.customers() != initial


# -- faults -----------------------------------------------------------------------------------


def test_latency_fault_for_one_customer(sim):
    first, second = customers(sim)[:2]
    token = access_token(sim)
    fault(sim, kind="latency", latency_ms=300, customer=first["zaaid"], endpoint="current_status")
    started = time.monotonic()
    assert current_status(sim, token, first["zaaid"]).status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert current_status(sim, token, second["zaaid"]).status_code == 200
    assert time.monotonic() - started < 0.3


def test_429_fault_with_retry_after_and_count(sim):
    token = creds(sim)["msp_authtoken"]
    fault(sim, kind="status", http_status=429, retry_after=7, count=2)
    answers = [portals(sim, token) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "7"
    assert answers[0].json() == {
        "error_code": 1003,
        "message": "Too many requests. Try again after some time.",
    }
    assert ctl(sim, "GET", "faults")["faults"] == []


def test_5xx_and_error_rate_faults(sim):
    token = creds(sim)["msp_authtoken"]
    fault_id = fault(sim, kind="status", http_status=503, endpoint="portals")
    answer = portals(sim, token)
    assert answer.status_code == 503
    assert answer.json() == {"error_code": 1, "message": "Internal server error"}
    ctl(sim, "POST", "faults/clear", {"id": fault_id})
    fault(sim, kind="error_rate", rate=0.5, http_status=500)
    statuses = {portals(sim, token).status_code for _ in range(40)}
    assert statuses == {200, 500}


def test_malformed_and_html_faults(sim):
    token = creds(sim)["msp_authtoken"]
    fault(sim, kind="malformed", count=1)
    answer = portals(sim, token)
    assert answer.status_code == 200
    with pytest.raises(ValueError):
        answer.json()
    fault(sim, kind="html", count=1)
    answer = portals(sim, token)
    assert answer.status_code == 502
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "<html>" in answer.text


def test_hang_fault_times_the_client_out(sim):
    token = creds(sim)["msp_authtoken"]
    fault(sim, kind="hang", count=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        portals(sim, token, timeout=0.5)
    assert portals(sim, token).status_code == 200
    assert ctl(sim, "POST", "faults/clear")["cleared"] == 1  # releases the held request
    assert counters(sim)["dropped"]["hang"] == 1


def test_reset_fault_raises_connection_error(sim):
    token = creds(sim)["msp_authtoken"]
    fault(sim, kind="reset", count=1)
    with requests.Session() as session, pytest.raises(requests.exceptions.ConnectionError):
        session.get(
            f"{sim.url}/api/msp/customers/portals",
            headers={"Authorization": f"Zoho-authtoken {token}"},
            timeout=TIMEOUT,
        )
    assert portals(sim, token).status_code == 200


def test_invalid_token_fault(sim):
    customer = customers(sim)[0]
    token = access_token(sim)
    fault(sim, kind="invalid_token", endpoint="current_status", count=1)
    answer = current_status(sim, token, customer["zaaid"])
    assert answer.status_code == 401 and answer.json()["error_code"] == 1102
    assert current_status(sim, token, customer["zaaid"]).status_code == 200


def test_throttle_per_endpoint_and_credential(sim):
    customer = customers(sim)[0]
    one, other = access_token(sim), access_token(sim)
    spec = {"kind": "throttle", "endpoint": "current_status", "calls": 3, "window_s": 60}
    fault(sim, **spec, lock_s=2)
    answers = [current_status(sim, one, customer["zaaid"]) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert answers[3].headers["Retry-After"] == "2"
    assert current_status(sim, other, customer["zaaid"]).status_code == 200
    assert oauth_get(sim, "/api/short/msp/customers", one).status_code == 200


def test_bad_control_requests(sim):
    answer = requests.post(f"{sim.url}/_sim/faults", json={"kind": "nope"}, timeout=TIMEOUT)
    assert answer.status_code == 400
    payload = {"customer": "nobody", "group_id": "1", "status": 0}
    answer = requests.post(f"{sim.url}/_sim/status", json=payload, timeout=TIMEOUT)
    assert answer.status_code == 404
    unknown = requests.get(f"{sim.url}/api/nothing/here", timeout=TIMEOUT)
    assert unknown.status_code == 404
    assert unknown.json() == {"error_code": 404, "message": "Resource not found"}


# -- counters and reset -----------------------------------------------------------------------


def test_counters_per_endpoint_customer_and_connection(sim):
    first, second = customers(sim)[:2]
    token = access_token(sim)
    ctl(sim, "POST", "counters/reset")
    with requests.Session() as session:
        for _ in range(3):
            current_status(sim, token, first["zaaid"], session=session)
        current_status(sim, token, second["zaaid"], session=session)
        session.get(
            f"{sim.url}/api/short/msp/customers",
            headers={"Authorization": f"Zoho-oauthtoken {token}"},
            timeout=TIMEOUT,
        )
    seen = counters(sim)
    assert seen["requests"]["current_status"] == 4
    assert seen["requests"]["short_customers"] == 1
    assert seen["by_customer"] == {
        first["zaaid"]: {"current_status": 3},
        second["zaaid"]: {"current_status": 1},
    }
    assert seen["connections"] == 1
    assert seen["responses"] == {"200": 5}
    assert seen["zaaid_via"] == {"cookie": 4, "param": 0}


def test_cookie_conflict_is_counted(sim):
    first, second = customers(sim)[:2]
    headers = {
        "Authorization": f"Zoho-oauthtoken {access_token(sim)}",
        "Cookie": f"zaaid={first['zaaid']}; zaaid={second['zaaid']}",
    }
    requests.get(f"{sim.url}/api/current_status", headers=headers, timeout=TIMEOUT)
    assert counters(sim)["cookie_conflicts"] == 1


def test_reset_restores_the_seed_state(sim):
    customer = with_groups(sim)
    initial = customers(sim)
    token = authtoken(sim, customer)
    access = access_token(sim)
    sim.set_status(customer["zaaid"], customer["groups"][0]["group_id"], 0)
    sim.add_fault("latency", latency_ms=1)
    ctl(sim, "POST", "reset")
    assert customers(sim) == initial
    assert ctl(sim, "GET", "tokens") == {"tokens": {}, "refresh_tokens": 0, "access_tokens": 0}
    assert ctl(sim, "GET", "faults") == {"faults": []}
    assert groups_status(sim, token, zaid=customer["zaid"]).status_code == 401
    assert oauth_get(sim, "/api/short/msp/customers", access).status_code == 401
    assert sum(counters(sim)["requests"].values()) == 2


def test_in_process_helpers_match_http(sim):
    assert sim.customers() == customers(sim)
    assert sim.control("GET", "/_sim/credentials") == sim.credentials()
    fault_id = sim.add_fault("latency", latency_ms=1)
    assert [f["id"] for f in sim.control("GET", "/_sim/faults")["faults"]] == [fault_id]
    assert sim.clear_faults() == 1


def test_cli_prints_url_and_stops_on_sigterm():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "site24x7_simulator", "--port", "0", "--customers", "3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://[\d.]+:\d+", line).group(0)
        health = requests.get(f"{url}/_sim/health", timeout=TIMEOUT).json()
        assert health["customers"] == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()


def test_control_json_is_plain(sim):
    body = requests.get(f"{sim.url}/_sim/counters", timeout=TIMEOUT).text
    assert json.loads(body)["requests"]["portals"] == 0
