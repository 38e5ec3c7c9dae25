"""`manage.py site24x7_probe` against the simulator over real HTTP, with the credentials in the
vault (tokens.services.credential_import) or in the .env settings: the table, the exit status,
the report (no secret in it), --customer, and the simulator faults."""

import base64
import json
import re
import uuid
from io import StringIO
from urllib.parse import quote, quote_plus

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError

from msp_dashboard.site24x7 import Site24x7Client
from portals.models import Customer
from tokens.models import Credential, CredentialState
from tokens.services import credential_import

pytestmark = pytest.mark.django_db


def sim_get(sim, path: str) -> dict:
    answer = requests.get(f"{sim.url}/_sim/{path}", timeout=5)
    answer.raise_for_status()
    return answer.json()


def sim_post(sim, path: str, payload: dict | None = None) -> dict:
    answer = requests.post(f"{sim.url}/_sim/{path}", json=payload or {}, timeout=5)
    answer.raise_for_status()
    return answer.json()


def fault(sim, kind: str, **spec) -> None:
    sim_post(sim, "faults", {"kind": kind, **spec})


class Probe:
    """The outcome of one run: exit status, stdout, stderr, table rows by flow label."""

    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def row(self, label_start: str) -> str:
        lines = [line for line in self.out.splitlines() if line.startswith(label_start)]
        assert len(lines) == 1, (label_start, self.out)
        return lines[0]

    def cells(self, label_start: str) -> list[str]:
        """The row's cells after the label (columns are separated by two or more spaces)."""
        rest = self.row(label_start)[len(label_start) :]
        return re.split(r"\s{2,}", rest.strip())


def probe(*args: str) -> Probe:
    out, err = StringIO(), StringIO()
    try:
        call_command("site24x7_probe", *args, stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return Probe(code, out.getvalue(), err.getvalue())


@pytest.fixture
def sim_customers(simulator):
    return sim_get(simulator, "customers")["customers"]


@pytest.fixture
def sim_creds(simulator):
    return sim_get(simulator, "credentials")


@pytest.fixture
def sim_client(simulator):
    with Site24x7Client("US", api_url=simulator.url, accounts_url=simulator.url) as client:
        yield client


@pytest.fixture
def customers(sim_customers):
    """The dashboard's customers (legacy generation, all ids known), in simulator order."""
    return [
        Customer.objects.create(
            name=data["name"],
            auth_generation="legacy",
            portal_id=data["portal_id"],
            zaid=data["zaid"],
            zaaid=data["zaaid"],
            user_id=data["user_id"],
        )
        for data in sim_customers[:3]
    ]


def import_portal_token(sim_client, customer: Customer, data: dict) -> str:
    token = sim_client.create_portal_authtoken(
        portal_id=data["portal_id"], email=data["email"], password=data["password"]
    )
    credential_import(kind="portal_authtoken", secret=token, customer=customer)
    return token


@pytest.fixture
def vault(simulator, sim_client, sim_creds, sim_customers, customers):
    """Every credential kind in the vault; returns every secret, for the leak checks."""
    credential_import(kind="msp_authtoken", secret=sim_creds["msp_authtoken"])
    tokens = sim_client.exchange_grant_code(
        client_id=sim_creds["client_id"],
        client_secret=sim_creds["client_secret"],
        code=sim_creds["grant_code"],
    )
    credential_import(
        kind="oauth",
        secret=tokens.refresh_token,
        client_id=sim_creds["client_id"],
        client_secret=sim_creds["client_secret"],
    )
    portal = import_portal_token(sim_client, customers[0], sim_customers[0])
    sim_post(simulator, "counters/reset")
    return {
        "msp": sim_creds["msp_authtoken"],
        "client_secret": sim_creds["client_secret"],
        "refresh": tokens.refresh_token,
        "first_access": tokens.access_token,
        "portal": portal,
    }


def all_forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
    }


def issued_access_tokens(sim) -> list[str]:
    with sim.state.lock:
        return list(sim.state.oauth.access)


# --- normal state ------------------------------------------------------------------------------


def test_every_flow_works_and_exit_is_zero(simulator, vault, sim_customers):
    result = probe()

    assert result.code == 0, result.out
    assert "Exit status 0: the configured setup works." in result.out
    for label in (
        "portals (MSP authtoken)",
        "monitor_groups_status (authtoken, ?zaid=)",
        "monitor_groups_status (authtoken, cookie clientportal=)",
        "current_status (authtoken, ?zaid=)",
        "OAuth access token (shared cache)",
        "short customer list",
        "current_status (OAuth, cookie zaaid=)",
        "current_status (OAuth, ?zaaid=)",
        "monitor_groups_status (OAuth, cookie zaaid=)",
        "MSP-wide customer status",
    ):
        cells = result.cells(label)
        assert cells[1] == "ok", (label, cells)
    assert result.cells("portals (MSP authtoken)")[:6] == [
        "needed",
        "ok",
        "200",
        "0",
        "-",
        "-",
    ]
    assert result.cells("monitor_groups_status (authtoken, ?zaid=)")[0] == "needed"
    assert result.cells("current_status (OAuth, cookie zaaid=)")[0] == "needed"
    assert result.cells("current_status (OAuth, ?zaaid=)")[0] == "alternative"
    assert result.cells("MSP-wide customer status")[0] == "optional"
    statuses = result.cells("monitor_groups_status (authtoken, ?zaid=)")[5]
    expected = {str(g["status"]) for g in sim_customers[0]["groups"]}
    assert set(statuses.split(",")) == expected
    assert "match" in result.row("current_status (OAuth, cookie zaaid=)")
    assert f"legacy customer read: {sim_customers[0]['name']}" in result.out
    assert f"oauth customer read: {sim_customers[0]['name']}" in result.out


def test_probe_sends_each_flow_once_and_reuses_the_cached_access_token(simulator, vault, settings):
    # A private cache: another test run clearing the shared file cache must not interfere.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    probe()
    counters = sim_get(simulator, "counters")
    assert counters["requests"] == {
        "portals": 1,
        "authtoken_create": 0,
        "authtoken_delete": 0,
        "monitor_groups_status": 3,  # ?zaid=, clientportal cookie, OAuth + zaaid cookie
        "oauth_token": 1,  # one mint into the shared cache
        "oauth_revoke": 0,
        "short_customers": 1,
        "current_status": 3,  # zaaid cookie, ?zaaid=, legacy authtoken + ?zaid=
        "msp_monitors_status": 1,
    }
    assert counters["zaid_via"] == {"param": 2, "cookie": 1}
    assert counters["zaaid_via"] == {"param": 1, "cookie": 2}

    assert probe().code == 0
    assert sim_get(simulator, "counters")["mints"] == 1  # the second run used the cache


def test_switches_change_which_rows_are_needed(settings, simulator, vault):
    settings.SITE24X7_LEGACY_STATUS_SOURCE = "current_status"
    settings.SITE24X7_ZAID_VIA = "cookie"
    settings.SITE24X7_OAUTH_STATUS_SOURCE = "monitor_groups_status"
    result = probe()
    assert result.code == 0
    assert result.cells("current_status (authtoken, cookie clientportal=)")[0] == "needed"
    assert result.cells("monitor_groups_status (authtoken, ?zaid=)")[0] == "alternative"
    assert result.cells("monitor_groups_status (OAuth, cookie zaaid=)")[0] == "needed"
    assert "SITE24X7_LEGACY_STATUS_SOURCE=current_status" in result.out


# --- faults ------------------------------------------------------------------------------------


def test_invalid_token_fails_the_needed_flow_and_suggests_the_other_source(simulator, vault):
    fault(simulator, "invalid_token", endpoint="monitor_groups_status")
    result = probe()

    assert result.code == 1
    cells = result.cells("monitor_groups_status (authtoken, ?zaid=)")
    assert cells[:4] == ["needed", "FAIL auth", "401", "1101"]
    assert "Invalid value passed for authtoken." in cells[-1]
    assert result.cells("current_status (authtoken, ?zaid=)")[1] == "ok"
    assert "set SITE24X7_LEGACY_STATUS_SOURCE=current_status." in result.out
    assert "Exit status 1: something the configured setup needs failed." in result.out


def test_throttled_answer_shows_429_and_retry_after(simulator, vault):
    fault(simulator, "status", endpoint="current_status", http_status=429, retry_after=7)
    result = probe()

    assert result.code == 1
    cells = result.cells("current_status (OAuth, cookie zaaid=)")
    assert cells[:5] == ["needed", "FAIL throttled", "429", "1003", "Retry-After=7"]
    assert "Too many requests" in cells[-1]
    assert "current_status is throttled (HTTP 429, Retry-After 7 s)" in result.out
    assert "SITE24X7_CALL_BUDGETS" in result.out


def test_server_error_fails_the_customer_list(simulator, vault):
    fault(simulator, "status", endpoint="short_customers", http_status=503)
    result = probe()

    assert result.code == 1
    assert result.cells("short customer list")[:4] == ["needed", "FAIL transient", "503", "1"]
    assert "Internal server error" in result.row("short customer list")
    status_row = result.cells("current_status (OAuth, cookie zaaid=)")
    assert status_row[1] == "skip" and "customer list failed" in status_row[-1]


def test_malformed_and_html_answers_are_described_not_shown(simulator, vault):
    fault(simulator, "malformed", endpoint="monitor_groups_status")
    fault(simulator, "html", endpoint="portals")
    result = probe()

    assert result.code == 1
    cells = result.cells("monitor_groups_status (authtoken, ?zaid=)")
    assert cells[:3] == ["needed", "FAIL response", "200"]
    assert "(truncated or invalid JSON)" in cells[-1]
    assert '"group_name":"Web' not in result.out
    portals = result.cells("portals (MSP authtoken)")
    assert portals[:3] == ["needed", "FAIL transient", "502"]
    assert "(HTML page, not JSON)" in portals[-1]
    assert "nginx" not in result.out


def test_missing_endpoint_404_and_the_switch_that_fixes_it(settings, simulator, vault):
    fault(simulator, "status", endpoint="monitor_groups_status", http_status=404)
    result = probe()

    assert result.code == 1
    cells = result.cells("monitor_groups_status (authtoken, ?zaid=)")
    assert cells[:4] == ["needed", "FAIL not-found", "404", "404"]
    assert "Resource not found" in cells[-1]
    assert result.cells("monitor_groups_status (OAuth, cookie zaaid=)")[1] == "FAIL not-found"
    assert "set SITE24X7_LEGACY_STATUS_SOURCE=current_status." in result.out

    settings.SITE24X7_LEGACY_STATUS_SOURCE = "current_status"
    assert probe().code == 0  # the same account, switched: works


def test_an_optional_flow_failing_does_not_fail_the_setup(simulator, vault):
    fault(simulator, "status", endpoint="msp_monitors_status", http_status=404)
    result = probe()
    assert result.code == 0
    assert result.cells("MSP-wide customer status")[:3] == ["optional", "FAIL not-found", "404"]


def test_revoked_refresh_token_fails_the_oauth_flows(simulator, vault, sim_client):
    sim_client.revoke_refresh_token(refresh_token=vault["refresh"])
    result = probe()
    assert result.code == 1
    assert result.cells("OAuth access token (shared cache)")[:2] == ["needed", "FAIL auth"]
    assert "Zoho refused the client id/secret or refresh token" in result.out


# --- the report and secrets ----------------------------------------------------------------------


def test_report_is_json_and_holds_no_secret(simulator, vault, tmp_path):
    canary_msp = f"CANARY-{uuid.uuid4()}"
    # An older MSP authtoken: the newest active one is probed, the canary is refused upstream.
    Credential.objects.filter(kind="msp_authtoken").update(state=CredentialState.REVOKED)
    credential_import(kind="msp_authtoken", secret=canary_msp)
    fault(simulator, "status", endpoint="current_status", http_status=429, retry_after=3)
    report = tmp_path / "probe.json"

    result = probe("--report", str(report))

    text = report.read_text()
    document = json.loads(text)
    assert document["exit_status"] == result.code == 1
    assert document["credentials"]["msp_authtoken"] == {
        "source": "vault",
        "secret": f"••••{canary_msp[-4:]}",
    }
    portals = next(row for row in document["rows"] if row["flow"] == "portals")
    assert (portals["result"], portals["http_status"], portals["code"]) == ("FAIL", 401, "1101")
    throttled = next(r for r in document["rows"] if r["flow"] == "current_status/oauth/cookie")
    assert throttled["rate_limit"] == {"Retry-After": "3"}
    assert document["suggestions"]
    secrets = [
        canary_msp,
        vault["client_secret"],
        vault["refresh"],
        vault["portal"],
        *issued_access_tokens(simulator),
    ]
    assert len(secrets) >= 6
    for secret in secrets:
        for form in all_forms(secret):
            assert form not in text, "a secret reached the report"
            assert form not in result.out + result.err, "a secret reached the output"


def test_customer_option_reads_that_customer(simulator, vault, sim_client, customers):
    data = sim_get(simulator, "customers")["customers"]
    import_portal_token(sim_client, customers[2], data[2])
    sim_post(simulator, "counters/reset")

    result = probe("--customer", customers[2].name.upper())

    assert result.code == 0
    assert f"legacy customer read: {customers[2].name}" in result.out
    assert f"oauth customer read: {customers[2].name}" in result.out
    by_customer = sim_get(simulator, "counters")["by_customer"]
    assert set(by_customer) == {data[2]["zaaid"]}
    assert by_customer[data[2]["zaaid"]] == {"monitor_groups_status": 3, "current_status": 3}


def test_customer_without_portal_token_skips_the_legacy_status(simulator, vault, customers):
    result = probe("--customer", customers[1].name)
    assert result.code == 0
    cells = result.cells("monitor_groups_status (authtoken, ?zaid=)")
    assert cells[:2] == ["needed", "skip"]
    assert "no customer portal authtoken" in cells[-1]
    assert result.cells("current_status (OAuth, cookie zaaid=)")[1] == "ok"


def test_unknown_customer_fails_with_a_clear_message(simulator, vault):
    result = probe("--customer", "No Such Customer GmbH")
    assert result.code == 1
    cells = result.cells("current_status (OAuth, cookie zaaid=)")
    assert cells[:2] == ["needed", "FAIL config"]
    assert "'No Such Customer GmbH' is not in the customer list" in cells[-1]


def test_no_credentials_exits_2_with_a_clear_message(simulator, settings):
    settings.SITE24X7_MSP_AUTHTOKEN = ""
    settings.SITE24X7_CLIENT_ID = settings.SITE24X7_CLIENT_SECRET = ""
    settings.SITE24X7_REFRESH_TOKEN = ""
    result = probe()
    assert result.code == 2
    assert "No Site24x7 credentials are configured" in result.err
    assert "SITE24X7_MSP_AUTHTOKEN" in result.err
    assert sum(sim_get(simulator, "counters")["requests"].values()) == 0


def test_env_credentials_are_used_when_the_vault_has_none(
    simulator, settings, sim_client, sim_creds
):
    tokens = sim_client.exchange_grant_code(
        client_id=sim_creds["client_id"],
        client_secret=sim_creds["client_secret"],
        code=sim_creds["grant_code"],
    )
    settings.SITE24X7_MSP_AUTHTOKEN = sim_creds["msp_authtoken"]
    settings.SITE24X7_CLIENT_ID = sim_creds["client_id"]
    settings.SITE24X7_CLIENT_SECRET = sim_creds["client_secret"]
    settings.SITE24X7_REFRESH_TOKEN = tokens.refresh_token
    sim_post(simulator, "counters/reset")

    result = probe()

    assert result.code == 0, result.out
    assert "credential msp_authtoken: ••••" in result.out and "from .env" in result.out
    assert result.cells("OAuth mint")[:3] == ["needed", "ok", "200"]
    assert "no customer portal authtoken configured" in result.out
    assert sim_get(simulator, "counters")["mints"] == 1
    for secret in (sim_creds["msp_authtoken"], sim_creds["client_secret"], tokens.refresh_token):
        assert secret not in result.out


def test_bad_switch_value_stops_the_probe(settings, vault):
    settings.SITE24X7_ZAAID_VIA = "header"
    result = probe()
    assert result.code == 1
    assert "SITE24X7_ZAAID_VIA must be one of param, cookie" in result.err


def test_a_secret_that_does_not_decrypt_fails_before_any_call(simulator, vault):
    Credential.objects.filter(kind="msp_authtoken").update(secret_ciphertext="v1:k:garbage")
    result = probe()
    assert result.code == 1
    cells = result.cells("vault: MSP authtoken")
    assert cells[:2] == ["needed", "FAIL secret"]
    assert "does not decrypt" in cells[-1]
    assert result.cells("portals (MSP authtoken)")[1] == "skip"
    assert sim_get(simulator, "counters")["requests"]["portals"] == 0
