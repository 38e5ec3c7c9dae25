"""Pure unit tests of msp_dashboard.site24x7.probe for answers the simulator does not give
(an upstream that echoes the token, rate-limit headers, one selector working and the other
not, a version complaint, a stale cached token), with `responses` standing in for Site24x7."""

import json

import pytest
import responses
from responses import matchers

from msp_dashboard.site24x7 import MintLimitError, Site24x7Client
from msp_dashboard.site24x7.probe import (
    EXIT_FAILED,
    EXIT_NO_CREDENTIALS,
    EXIT_OK,
    LegacySetup,
    OAuthIdentity,
    OAuthSetup,
    Switches,
    compare_shape,
    render_table,
    run_probe,
    statuses_seen,
)

API = "https://www.site24x7.com"
ACCOUNTS = "https://accounts.zoho.com"
PORTAL_TOKEN = "12353635607.13213743991.CANARY-portal-0123456789abcdef"
MSP_TOKEN = "CANARY-msp-authtoken-0123456789abcdef"
ACCESS = "1000.CANARY-access-0123456789abcdef.0123"
FRESH = "1000.CANARY-fresh-0123456789abcdef.4567"
ZAID = "j2db7FrteGyJWxa/JjpJlw=="
ZAAID = "658123456"
GROUPS = [
    {
        "group_name": "Web",
        "group_id": "1",
        "monitors": 3,
        "status": 1,
        "error_monitors": 0,
        "top_group": True,
    }
]
CURRENT = {
    "monitor_groups": [
        {
            "group_id": "1",
            "group_name": "Web",
            "status": "2",
            "monitors": [{"monitor_id": "9", "name": "site", "status": "2"}],
        }
    ],
    "monitors": [{"monitor_id": "9", "name": "site", "status": "2"}],
}


def ok(data) -> dict:
    return {"code": 0, "message": "success", "data": data}


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client():
    return Site24x7Client("US")


def legacy(client, **kwargs) -> LegacySetup:
    values = {"portal_authtoken": PORTAL_TOKEN, "zaid": ZAID, "customer_name": "Acme"}
    return LegacySetup(client, **{**values, **kwargs})


def row(report, flow):
    return next(r for r in report.rows if r.flow == flow)


def test_an_upstream_that_echoes_the_token_is_scrubbed_everywhere(rsps, client):
    echo = {"error_code": 1101, "message": f"Invalid value passed for authtoken {PORTAL_TOKEN}"}
    rsps.get(f"{API}/api/msp/customers/portals", status=401, json={"message": MSP_TOKEN})
    rsps.get(f"{API}/api/monitor_groups/status", status=401, json=echo)
    rsps.get(f"{API}/api/current_status", status=401, json=echo)

    report = run_probe(legacy=legacy(client, msp_authtoken=MSP_TOKEN))

    text = render_table(report) + json.dumps(report.to_dict()) + "\n".join(report.suggestions)
    for secret in (PORTAL_TOKEN, MSP_TOKEN):
        assert secret not in text
    assert "Invalid value passed for authtoken ••••" in row(report, "portals").message + text
    assert report.exit_status == EXIT_FAILED
    assert report.redact(f"x {PORTAL_TOKEN} y") == "x •••• y"


def test_rate_limit_headers_are_reported(rsps, client):
    headers = {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "49", "X-Other": "1"}
    rsps.get(f"{API}/api/monitor_groups/status", json=ok(GROUPS), headers=headers)
    rsps.get(f"{API}/api/current_status", json=ok(CURRENT))

    report = run_probe(legacy=legacy(client))

    first = row(report, "monitor_groups_status/legacy/param")
    assert first.rate_limit == {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "49"}
    assert "X-RateLimit-Limit=50" in render_table(report)
    assert any("rate-limit headers" in tip for tip in report.suggestions)


def test_zaid_cookie_working_where_the_param_fails_suggests_the_cookie(rsps, client):
    forbidden = {"error_code": 1100, "message": "You are not authorized to perform this operation"}

    def register():
        rsps.reset()  # a response that matched is used up when others match the same URL
        rsps.get(
            f"{API}/api/monitor_groups/status",
            json=ok(GROUPS),
            match=[matchers.header_matcher({"Cookie": f"clientportal={ZAID}"})],
        )
        rsps.get(f"{API}/api/monitor_groups/status", status=403, json=forbidden)
        rsps.get(f"{API}/api/current_status", status=403, json=forbidden)

    register()
    report = run_probe(legacy=legacy(client))

    assert row(report, "monitor_groups_status/legacy/param").error == "auth"
    assert row(report, "monitor_groups_status/legacy/cookie").result == "ok"
    assert report.exit_status == EXIT_FAILED
    assert any(tip.endswith("set SITE24X7_ZAID_VIA=cookie.") for tip in report.suggestions)
    register()
    fixed = run_probe(legacy=legacy(client), switches=Switches(zaid_via="cookie"))
    assert fixed.exit_status == EXIT_OK
    assert row(fixed, "monitor_groups_status/legacy/cookie").role == "needed"


def test_zaaid_param_working_where_the_cookie_fails_suggests_the_param(rsps, client):
    rsps.get(f"{API}/api/short/msp/customers", json=ok([{"name": "Acme", "zaaid": ZAAID}]))
    rsps.get(
        f"{API}/api/current_status",
        json=ok(CURRENT),
        match=[matchers.query_param_matcher({"group_required": "true", "zaaid": ZAAID})],
    )
    rsps.get(f"{API}/api/current_status", status=403, json={"error_code": 1100, "message": "no"})
    rsps.get(f"{API}/api/monitor_groups/status", status=404, json={"message": "nope"})
    rsps.get(f"{API}/api/msp/customers/monitors/status", status=404, json={"message": "nope"})

    report = run_probe(oauth=OAuthSetup(client, access_token=lambda rejected: ACCESS))

    assert row(report, "short_customers").missing == ["customer.user_id"]
    assert row(report, "current_status/oauth/param").statuses == ['"2"']
    assert any(tip.endswith("set SITE24X7_ZAAID_VIA=param.") for tip in report.suggestions)
    assert report.customers == {"oauth": "Acme"}


def test_shape_names_missing_and_unexpected_fields():
    payload = ok([{"group_id": "1", "status": "2", "monitors": 1, "colour": "red"}])
    missing, unexpected = compare_shape("monitor_groups_status", payload)
    assert missing == ["group.group_name", "group.error_monitors", "group.top_group"]
    assert unexpected == ["group.colour"]
    assert statuses_seen("monitor_groups_status", payload) == ['"2"']
    wide = ok([{"zaaid": ZAAID, "customer_name": "A", "monitors": [{"status": 0, "x": 1}]}])
    assert compare_shape("msp_monitors_status", wide) == (
        ["monitor.last_polled_time"],
        ["monitor.x"],
    )
    assert compare_shape("current_status", {"error_code": 1, "message": "x"}) == ([], [])


def test_a_version_complaint_suggests_the_other_accept_version(rsps, client):
    complaint = {"error_code": 1, "message": "Unsupported API version"}
    rsps.get(f"{API}/api/monitor_groups/status", status=406, json=complaint)
    rsps.get(f"{API}/api/current_status", status=406, json=complaint)
    report = run_probe(legacy=legacy(client))
    assert any("SITE24X7_ACCEPT_VERSION=2.1" in tip for tip in report.suggestions)


def test_no_answer_at_all_is_a_transient_failure_without_http_status(rsps, client):
    import requests

    rsps.get(f"{API}/api/monitor_groups/status", body=requests.ConnectionError("refused"))
    rsps.get(f"{API}/api/current_status", json=ok(CURRENT))
    report = run_probe(legacy=legacy(client))
    failed = row(report, "monitor_groups_status/legacy/param")
    assert (failed.result, failed.error, failed.http_status) == ("FAIL", "transient", None)
    assert "could not talk to Site24x7 (ConnectionError)" in failed.message
    assert any("SITE24X7_LEGACY_STATUS_SOURCE=current_status" in t for t in report.suggestions)


def test_mint_limit_and_direct_mint_secrets(rsps, client):
    denied = {"error": "Access Denied", "error_description": "You have made too many requests"}
    rsps.post(f"{ACCOUNTS}/oauth/v2/token", status=400, json=denied)
    identity = OAuthIdentity("1000.ABCDEFGHIJ", "CANARY-client-secret-0123", "CANARY-refresh-0123")
    assert "CANARY-refresh-0123" not in repr(identity)

    report = run_probe(oauth=OAuthSetup(client, identity=identity))

    mint = row(report, "oauth_token")
    assert (mint.result, mint.error, mint.http_status, mint.code) == (
        "FAIL",
        "mint-limit",
        400,
        "Access Denied",
    )
    assert row(report, "short_customers").note == "no access token"
    assert any("10 per refresh token per 10 minutes" in tip for tip in report.suggestions)
    assert report.exit_status == EXIT_FAILED


def test_a_stale_cached_token_is_replaced_once(rsps, client):
    supplied = []

    def supplier(rejected):
        supplied.append(rejected)
        return ACCESS if rejected is None else FRESH

    rsps.get(
        f"{API}/api/short/msp/customers",
        status=401,
        json={"error_code": 1102, "message": "OAuth Access Token is invalid or has expired."},
        match=[matchers.header_matcher({"Authorization": f"Zoho-oauthtoken {ACCESS}"})],
    )
    rsps.get(f"{API}/api/short/msp/customers", json=ok([{"name": "Acme", "zaaid": ZAAID}]))
    rsps.get(f"{API}/api/current_status", json=ok(CURRENT))
    rsps.get(f"{API}/api/monitor_groups/status", json=ok(GROUPS))
    rsps.get(f"{API}/api/msp/customers/monitors/status", json=ok([]))

    report = run_probe(oauth=OAuthSetup(client, access_token=supplier))

    assert supplied == [None, ACCESS]
    listing = row(report, "short_customers")
    assert listing.result == "ok" and "fresh one was minted" in listing.note
    assert report.exit_status == EXIT_OK
    assert FRESH not in json.dumps(report.to_dict())


def test_supplier_failure_is_reported_on_the_token_row(client):
    def supplier(rejected):
        raise MintLimitError("Zoho refused to mint", http_status=400, code="Access Denied")

    report = run_probe(oauth=OAuthSetup(client, access_token=supplier))
    token = row(report, "oauth_token")
    assert (token.result, token.error, token.http_status) == ("FAIL", "mint-limit", 400)


def test_nothing_configured_is_exit_2():
    report = run_probe()
    assert report.exit_status == EXIT_NO_CREDENTIALS
    assert render_table(report).startswith("(nothing was probed")


def test_a_throttled_alternative_says_re_run(rsps, client):
    rsps.get(f"{API}/api/monitor_groups/status", status=404, json={"message": "not here"})
    rsps.get(f"{API}/api/current_status", status=429, headers={"Retry-After": "9"}, json={})
    report = run_probe(legacy=legacy(client))
    assert row(report, "current_status/legacy/param").rate_limit == {"Retry-After": "9"}
    assert any("re-run the probe in a few minutes" in tip for tip in report.suggestions)
    assert any("Retry-After 9 s" in tip for tip in report.suggestions)
