"""Site24x7Client against mocked HTTP (`responses`), plus a few raw-socket transport checks."""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from msp_dashboard.site24x7 import (
    DATA_CENTRES,
    AccessToken,
    AuthError,
    ConfigurationError,
    DataCentre,
    GroupStatus,
    LoginError,
    MintLimitError,
    MspCustomer,
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
    get_data_centre,
    mask_secret,
)
from msp_dashboard.site24x7.classify import parse_retry_after
from msp_dashboard.site24x7.http import POOL_SIZE, PooledAdapter

API = "https://www.site24x7.com"
ZOHO = "https://accounts.zoho.com"
PORTAL = "https://accounts.zohoportal.com"
ZAID = "j2db7FrteGyJWxa/JjpJlw=="
TOKEN = "12353635607.13213743991.ce2af7cfdf47e3ef6262c20f1c06487ac2fbf210b4c34ef3d1f11c671"
ACCESS = "1000.3f1c0aa2b7d84e6c9d5a.8be0f1a2c3d4e5f6a7b8"
GROUPS_BODY = {
    "code": 0,
    "message": "success",
    "data": [
        {
            "group_name": "zohocorp.com",
            "group_id": "20390000087595",
            "monitors": 3,
            "status": 2,
            "error_monitors": 1,
            "top_group": True,
        }
    ],
}
GROUPS = [GroupStatus("20390000087595", "zohocorp.com", Status.TROUBLE, 3, 1, True)]
CURRENT_BODY = {
    "code": 0,
    "data": {
        "monitor_groups": [
            {
                "group_id": "5",
                "group_name": "Web",
                "status": 0,
                "monitors": [
                    {
                        "monitor_id": "51",
                        "status": 0,
                        "last_polled_time": "2026-11-27T10:00:00+0000",
                    },
                    {"monitor_id": "52", "status": "1"},
                ],
            }
        ],
        "monitors": [],
    },
}


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client():
    with Site24x7Client("US") as c:
        yield c


def form_of(call) -> dict[str, list[str]]:
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    return parse_qs(call.request.body, keep_blank_values=True)


def query_of(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


# --- data centres and construction ---------------------------------------------------------------


def test_data_centre_table():
    assert list(DATA_CENTRES) == ["US", "EU", "IN", "AU", "CN", "JP", "CA", "UK", "AE", "SA"]
    assert get_data_centre("us").accounts_url == ZOHO
    assert get_data_centre(" eu ").api_url == "https://www.site24x7.eu"
    assert get_data_centre("JP").api_url == "https://app.site24x7.jp"
    assert get_data_centre("CA").accounts_url == "https://accounts.zohocloud.ca"
    assert get_data_centre("AU").api_console_url == "https://api-console.zoho.com.au"
    assert get_data_centre("US").portal_accounts_url == PORTAL
    assert get_data_centre("US").web_url == API
    for code, dc in DATA_CENTRES.items():
        assert dc.code == code
        for url in (dc.api_url, dc.accounts_url, dc.web_url, dc.api_console_url):
            assert url.startswith("https://") and not url.endswith("/")
        if code != "US":
            assert dc.portal_accounts_url is None


@pytest.mark.parametrize("code", ["XX", "", "usa", None, 1])
def test_unknown_data_centre(code):
    with pytest.raises(ValueError, match="unknown Site24x7 data centre"):
        get_data_centre(code)
    with pytest.raises(ValueError):
        Site24x7Client(code)


def test_overrides_apply_to_all_hosts():
    c = Site24x7Client(
        "EU", api_url="http://127.0.0.1:8111/", accounts_url="http://127.0.0.1:8112/api"
    )
    assert c.api_url == "http://127.0.0.1:8111"
    assert c.accounts_url == c.portal_accounts_url == "http://127.0.0.1:8112"
    custom = DataCentre(
        "ZZ", "https://a.example", "https://b.example", None, "https://a.example", "https://c"
    )
    assert Site24x7Client(custom).api_url == "https://a.example"


@pytest.mark.parametrize(
    "url", ["ftp://x.example", "www.site24x7.com", "https://u:p@x.example", "https://"]
)
def test_bad_override_urls(url):
    with pytest.raises(ConfigurationError):
        Site24x7Client("US", api_url=url)


def test_portal_host_unknown_outside_us(rsps):
    with pytest.raises(ConfigurationError, match="pass accounts_url"):
        Site24x7Client("EU").create_portal_authtoken(portal_id="1", email="a@b.c", password="pw")
    assert len(rsps.calls) == 0


# --- host allow-list, redirects, header safety ---------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/api/monitor_groups/status",
        "https://www.site24x7.eu/api/monitor_groups/status",
        "http://www.site24x7.com/api/monitor_groups/status",
        "https://www.site24x7.com:8443/api/monitor_groups/status",
        "https://www.site24x7.com.evil.example/api",
    ],
)
def test_host_allow_list(client, rsps, url):
    with pytest.raises(ConfigurationError) as info:
        client._transport.request("GET", url, endpoint="x", family="api")
    assert isinstance(info.value, ValueError) and isinstance(info.value, Site24x7Error)
    assert len(rsps.calls) == 0


def test_override_client_refuses_the_default_hosts(rsps):
    c = Site24x7Client("US", api_url="http://127.0.0.1:8111", accounts_url="http://127.0.0.1:8112")
    with pytest.raises(ConfigurationError):
        c._transport.request("GET", API + "/api/x", endpoint="x", family="api")
    assert len(rsps.calls) == 0


def test_redirect_is_not_followed(client, rsps):
    rsps.get(
        API + "/api/monitor_groups/status",
        status=302,
        headers={"Location": "https://site24x7.com/x"},
    )
    rsps.get("https://site24x7.com/x", json=GROUPS_BODY)
    with pytest.raises(ResponseError, match="redirect"):
        client.monitor_groups_status(authtoken=TOKEN, zaid=ZAID)
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("bad", ["", "a b", "tok\r\nX-Evil: 1", "tök", None])
def test_invalid_token_characters_rejected_without_echo(client, rsps, bad):
    with pytest.raises(ConfigurationError) as info:
        client.list_msp_customers(access_token=bad)
    assert bad is None or not bad or bad not in str(info.value)
    assert len(rsps.calls) == 0


@pytest.mark.parametrize("bad", ["", "a;b", "a b", "x\ny"])
def test_invalid_customer_ids_rejected(client, bad):
    with pytest.raises(ConfigurationError):
        client.current_status(access_token=ACCESS, zaaid=bad)
    with pytest.raises(ConfigurationError):
        client.monitor_groups_status(authtoken=TOKEN, zaid=bad)


def test_invalid_selector(client):
    with pytest.raises(ValueError, match="zaid_via"):
        client.monitor_groups_status(authtoken=TOKEN, zaid=ZAID, zaid_via="header")
    with pytest.raises(ValueError, match="zaaid_via"):
        client.current_status(access_token=ACCESS, zaaid="1", zaaid_via="query")


# --- success paths -------------------------------------------------------------------------------


def test_list_portals(client, rsps):
    body = {
        "code": 0,
        "data": [{"portal_id": 12353635607, "zaid": ZAID, "name": "Acme", "portal_name": "acme"}],
    }
    rsps.get(API + "/api/msp/customers/portals", json=body)
    assert client.list_portals(msp_authtoken=TOKEN) == [Portal("12353635607", ZAID, "Acme")]
    headers = rsps.calls[0].request.headers
    assert headers["Authorization"] == f"Zoho-authtoken {TOKEN}"
    assert headers["Accept"] == "application/json; version=2.0"
    assert headers["User-Agent"] == "msp_dashboard/1.0"
    assert "Cookie" not in headers
    # What a requests.Session adds to each request still goes out (compressed answers).
    assert headers["Accept-Encoding"] == requests.utils.default_headers()["Accept-Encoding"]
    assert headers["Connection"] == "keep-alive"


def test_create_portal_authtoken_sends_a_form_body(client, rsps):
    rsps.post(PORTAL + "/accounts/client/authtoken", json={"t": "json", "data": {"token": TOKEN}})
    token = client.create_portal_authtoken(
        portal_id="12353635607", email="a@b.example", password="p&ss=w rd"
    )
    assert token == TOKEN
    call = rsps.calls[0]
    assert urlsplit(call.request.url).query == ""
    assert form_of(call) == {
        "portal": ["12353635607"],
        "email": ["a@b.example"],
        "password": ["p&ss=w rd"],
        "client_portal": ["true"],
        "scopes": ["Site24x7/site24x7api"],
        "desc": ["msp_dashboard"],
        "grant_type": ["password"],
    }
    assert "Authorization" not in call.request.headers


def test_delete_portal_authtoken(client, rsps):
    rsps.post(
        PORTAL + "/accounts/client/authtoken/delete", json={"t": "json", "data": {"response": True}}
    )
    assert client.delete_portal_authtoken(portal_id="12353635607", authtoken=TOKEN) is None
    call = rsps.calls[0]
    assert urlsplit(call.request.url).query == ""
    assert form_of(call) == {"portal": ["12353635607"], "authtoken": [TOKEN]}


def test_monitor_groups_status_with_zaid_param(client, rsps):
    rsps.get(API + "/api/monitor_groups/status", json=GROUPS_BODY)
    assert client.monitor_groups_status(authtoken=TOKEN, zaid=ZAID) == GROUPS
    call = rsps.calls[0]
    assert query_of(call) == {"zaid": [ZAID]}
    assert "Cookie" not in call.request.headers
    assert call.request.headers["Authorization"] == f"Zoho-authtoken {TOKEN}"
    assert call.request.req_kwargs["timeout"] == (3.05, 10.0)


def test_monitor_groups_status_with_clientportal_cookie(client, rsps):
    rsps.get(API + "/api/monitor_groups/status", json=GROUPS_BODY)
    assert client.monitor_groups_status(authtoken=TOKEN, zaid=ZAID, zaid_via="cookie") == GROUPS
    call = rsps.calls[0]
    assert query_of(call) == {}
    assert call.request.headers["Cookie"] == f"clientportal={ZAID}"


def test_exchange_grant_code(client, rsps):
    body = {
        "access_token": ACCESS,
        "refresh_token": "1000.refresh.0123456789abcdef",
        "api_domain": "https://www.zohoapis.com",
        "token_type": "Bearer",
        "expires_in": 3600,
    }
    rsps.post(ZOHO + "/oauth/v2/token", json=body)
    tokens = client.exchange_grant_code(client_id="1000.ID", client_secret="sec", code="1000.code")
    assert tokens == OAuthTokens("1000.refresh.0123456789abcdef", ACCESS, 3600)
    call = rsps.calls[0]
    assert urlsplit(call.request.url).query == ""
    assert form_of(call) == {
        "grant_type": ["authorization_code"],
        "client_id": ["1000.ID"],
        "client_secret": ["sec"],
        "code": ["1000.code"],
    }


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"expires_in": 3600}, 3600),
        ({"expires_in": 3600000}, 3600),
        ({"expires_in": "3600000"}, 3600),
        ({"expires_in": 3600000, "expires_in_sec": 3600}, 3600),
        ({"expires_in": 3600000, "expires_in_sec": 1800}, 1800),
        ({"expires_in": 120}, 120),
        ({}, 3600),
        ({"expires_in": -5}, 0),
    ],
)
def test_mint_access_token(client, rsps, answer, expected):
    rsps.post(
        ZOHO + "/oauth/v2/token", json={"access_token": ACCESS, "token_type": "Bearer", **answer}
    )
    token = client.mint_access_token(
        client_id="1000.ID", client_secret="sec", refresh_token="1000.rt"
    )
    assert token == AccessToken(ACCESS, expected)
    call = rsps.calls[0]
    assert urlsplit(call.request.url).query == ""
    assert form_of(call) == {
        "grant_type": ["refresh_token"],
        "client_id": ["1000.ID"],
        "client_secret": ["sec"],
        "refresh_token": ["1000.rt"],
    }


@pytest.mark.parametrize("value", ["soon", None, True, [], float("nan")])
def test_mint_with_invalid_expiry(client, rsps, value):
    rsps.post(ZOHO + "/oauth/v2/token", json={"access_token": ACCESS, "expires_in": value})
    with pytest.raises(ResponseError, match="expires_in"):
        client.mint_access_token(client_id="i", client_secret="s", refresh_token="r")


def test_revoke_refresh_token(client, rsps):
    rsps.post(ZOHO + "/oauth/v2/token/revoke", json={"status": "success"})
    assert client.revoke_refresh_token(refresh_token="1000.rt") is None
    call = rsps.calls[0]
    assert urlsplit(call.request.url).query == ""
    assert form_of(call) == {"token": ["1000.rt"]}


def test_list_msp_customers(client, rsps):
    body = {"code": 0, "data": [{"name": "Acme Ltd", "zaaid": "658123456", "user_id": "77"}]}
    rsps.get(API + "/api/short/msp/customers", json=body)
    assert client.list_msp_customers(access_token=ACCESS) == [
        MspCustomer("Acme Ltd", "658123456", "77")
    ]
    assert rsps.calls[0].request.headers["Authorization"] == f"Zoho-oauthtoken {ACCESS}"


def test_current_status_with_zaaid_cookie(client, rsps):
    rsps.get(API + "/api/current_status", json=CURRENT_BODY)
    groups = client.current_status(access_token=ACCESS, zaaid="658123456")
    assert groups == [GroupStatus("5", "Web", Status.DOWN, 2, 1, True)]
    call = rsps.calls[0]
    assert query_of(call) == {"group_required": ["true"]}
    assert call.request.headers["Cookie"] == "zaaid=658123456"
    assert call.request.headers["Authorization"] == f"Zoho-oauthtoken {ACCESS}"
    assert call.request.headers["Accept"] == "application/json; version=2.0"


def test_current_status_with_zaaid_param(client, rsps):
    rsps.get(API + "/api/current_status", json=CURRENT_BODY)
    client.current_status(access_token=ACCESS, zaaid="658123456", zaaid_via="param")
    call = rsps.calls[0]
    assert query_of(call) == {"group_required": ["true"], "zaaid": ["658123456"]}
    assert "Cookie" not in call.request.headers


def test_msp_monitors_status(client, rsps):
    body = {
        "code": 0,
        "data": [
            {
                "zaaid": "1",
                "customer_name": "A",
                "monitors": [{"monitor_id": "m", "status": 2, "group_ids": ["g"]}],
                "monitor_groups": [{"group_id": "g", "group_name": "G", "status": 2}],
            }
        ],
    }
    rsps.get(API + "/api/msp/customers/monitors/status", json=body)
    assert client.msp_monitors_status(access_token=ACCESS) == {
        "1": [GroupStatus("g", "G", Status.TROUBLE, 1, 1, True)]
    }
    assert "Cookie" not in rsps.calls[0].request.headers


def test_accept_version_and_user_agent_are_configurable(rsps):
    c = Site24x7Client("US", accept_version="2.1", user_agent="ua/2")
    rsps.get(API + "/api/short/msp/customers", json={"code": 0, "data": []})
    assert c.list_msp_customers(access_token=ACCESS) == []
    assert rsps.calls[0].request.headers["Accept"] == "application/json; version=2.1"
    assert rsps.calls[0].request.headers["User-Agent"] == "ua/2"


# --- error mapping: the Site24x7 API -------------------------------------------------------------

HTML = "<!DOCTYPE html><html><body><h1>Bad Gateway</h1></body></html>"
API_ERRORS = [
    (401, {"error_code": 1101, "message": "Invalid value passed for authtoken."}, AuthError, 1101),
    (
        401,
        {"error_code": 1102, "message": "OAuth Access Token is invalid or has expired."},
        AuthError,
        1102,
    ),
    (
        200,
        {"error_code": 77, "message": "OAuth Access Token is invalid or has expired."},
        AuthError,
        77,
    ),
    (200, {"code": 1101, "message": "Invalid value passed for authtoken."}, AuthError, 1101),
    (
        403,
        {"error_code": 1100, "message": "You are not authorized to perform this operation"},
        AuthError,
        1100,
    ),
    (
        403,
        {"code": 1100, "message": "You are not authorized to perform this operation"},
        AuthError,
        1100,
    ),
    (401, "", AuthError, None),
    (403, HTML, AuthError, None),
    (401, {"error_code": 5, "message": "whatever"}, AuthError, 5),
    (500, {"error_code": 1, "message": "Internal server error"}, TransientError, 1),
    (502, HTML, TransientError, None),
    (503, "", TransientError, None),
    (504, {"code": 0, "data": []}, TransientError, None),
    (200, HTML, ResponseError, None),
    (400, HTML, ResponseError, None),
    (200, '{"code":0,"message":"success","data":[{"group_na', ResponseError, None),
    (200, "not json at all", ResponseError, None),
    (200, "", ResponseError, None),
    (200, {"code": 1, "message": "Something else"}, ResponseError, 1),
    (200, {"code": "E42", "message": "Odd"}, ResponseError, "E42"),
    (200, {"code": "9" * 5000, "message": "Odd"}, ResponseError, "9" * 40),
    (200, {"code": 0, "data": "oops"}, ResponseError, None),
    (200, {"code": 0}, ResponseError, None),
    (200, [1, 2, 3], ResponseError, None),
    (200, "42", ResponseError, None),
    (
        400,
        {"error_code": 1003, "message": "Too many requests. Try again after some time."},
        ThrottledError,
        1003,
    ),
    (400, {"error_code": 1234, "message": "Bad request"}, ResponseError, 1234),
    (400, {"code": 0, "data": []}, ResponseError, None),
    (404, {"error_code": 404, "message": "Resource not found"}, NotFoundError, 404),
    (404, HTML, NotFoundError, None),
    (418, "", ResponseError, None),
]


@pytest.mark.parametrize(("status", "body", "error", "code"), API_ERRORS)
def test_api_error_mapping(client, rsps, status, body, error, code):
    kwargs = {"json": body} if isinstance(body, (dict, list)) else {"body": body}
    rsps.get(API + "/api/monitor_groups/status", status=status, **kwargs)
    with pytest.raises(error) as info:
        client.monitor_groups_status(authtoken=TOKEN, zaid=ZAID)
    exc = info.value
    assert type(exc) is error
    assert (exc.http_status, exc.code, exc.endpoint) == (status, code, "monitor_groups_status")
    assert exc.args == (str(exc),) and 0 < len(str(exc)) < 260
    assert exc.__cause__ is None and exc.__context__ is None


def test_429_with_retry_after_seconds(client, rsps):
    body = {"error_code": 1003, "message": "Too many requests. Try again after some time."}
    rsps.get(API + "/api/current_status", status=429, json=body, headers={"Retry-After": "7"})
    with pytest.raises(ThrottledError) as info:
        client.current_status(access_token=ACCESS, zaaid="1")
    assert info.value.retry_after == 7.0 and info.value.http_status == 429
    assert isinstance(info.value, TransientError) and not isinstance(info.value, MintLimitError)


def test_429_with_retry_after_http_date(client, rsps):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    rsps.get(API + "/api/current_status", status=429, body="", headers={"Retry-After": when})
    with pytest.raises(ThrottledError) as info:
        client.current_status(access_token=ACCESS, zaaid="1")
    assert 25 <= info.value.retry_after <= 31


def test_429_without_retry_after_and_503_with_it(client, rsps):
    rsps.get(API + "/api/current_status", status=429, body="")
    with pytest.raises(ThrottledError) as info:
        client.current_status(access_token=ACCESS, zaaid="1")
    assert info.value.retry_after is None
    rsps.replace(
        responses.GET,
        API + "/api/current_status",
        status=503,
        body=HTML,
        headers={"Retry-After": "12"},
    )
    with pytest.raises(TransientError) as info:
        client.current_status(access_token=ACCESS, zaaid="1")
    assert type(info.value) is TransientError and info.value.retry_after == 12.0


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    for bad in (None, "", "soon", "Wed, 99 Foo 2015"):
        assert parse_retry_after(bad) is None


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (requests.exceptions.ReadTimeout("read timed out"), TransientError),
        (requests.exceptions.ConnectTimeout("connect timed out"), TransientError),
        (requests.exceptions.ConnectionError("Connection reset by peer"), TransientError),
        (requests.exceptions.ChunkedEncodingError("incomplete"), TransientError),
        (requests.exceptions.SSLError("certificate verify failed"), Site24x7Error),
        (requests.exceptions.ProxyError("proxy refused"), TransientError),
        (requests.exceptions.InvalidHeader("bad header value"), Site24x7Error),
    ],
)
def test_request_exceptions_are_typed_and_not_chained(client, rsps, exc, error):
    rsps.get(API + "/api/current_status", body=exc)
    with pytest.raises(error) as info:
        client.current_status(access_token=ACCESS, zaaid="1")
    assert type(info.value) is error
    assert type(exc).__name__ in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert info.value.__suppress_context__ is False


# --- error mapping: legacy portal accounts -------------------------------------------------------

PORTAL_CAUSES = [
    ("INVALID_PASSWORD", LoginError),
    ("NO_SUCH_USER", LoginError),
    ("INVALID_PORTAL", LoginError),
    ("EXCEEDED_MAXIMUM_ALLOWED_AUTHTOKENS", TokenLimitError),
    ("MISSING_PARAMETER", ResponseError),
    ("SOMETHING_NEW", ResponseError),
]


@pytest.mark.parametrize("status", [200, 400])
@pytest.mark.parametrize(("cause", "error"), PORTAL_CAUSES)
def test_create_authtoken_causes(client, rsps, status, cause, error):
    body = {"t": "json", "data": {"response": False, "cause": cause}}
    rsps.post(PORTAL + "/accounts/client/authtoken", status=status, json=body)
    with pytest.raises(error) as info:
        client.create_portal_authtoken(portal_id="1", email="a@b.c", password="pw")
    assert type(info.value) is error and info.value.code == cause
    assert not isinstance(info.value, AuthError)


def test_create_authtoken_without_token(client, rsps):
    rsps.post(PORTAL + "/accounts/client/authtoken", json={"t": "json", "data": {}})
    with pytest.raises(ResponseError, match="no token"):
        client.create_portal_authtoken(portal_id="1", email="a@b.c", password="pw")


@pytest.mark.parametrize("status", [200, 400])
def test_delete_unknown_authtoken(client, rsps, status):
    body = {"t": "json", "data": {"response": False, "cause": "INVALID_AUTHTOKEN"}}
    rsps.post(PORTAL + "/accounts/client/authtoken/delete", status=status, json=body)
    with pytest.raises(UnknownTokenError):
        client.delete_portal_authtoken(portal_id="1", authtoken=TOKEN)


@pytest.mark.parametrize(
    "body", [{"t": "json", "data": {"response": False}}, {"t": "json"}, {"data": []}]
)
def test_delete_not_confirmed(client, rsps, body):
    rsps.post(PORTAL + "/accounts/client/authtoken/delete", json=body)
    with pytest.raises(ResponseError):
        client.delete_portal_authtoken(portal_id="1", authtoken=TOKEN)


def test_portal_accounts_transient_and_auth(client, rsps):
    url = PORTAL + "/accounts/client/authtoken"
    rsps.post(url, status=502, body=HTML)
    with pytest.raises(TransientError):
        client.create_portal_authtoken(portal_id="1", email="a@b.c", password="pw")
    rsps.replace(responses.POST, url, status=401, body="")
    with pytest.raises(AuthError):
        client.create_portal_authtoken(portal_id="1", email="a@b.c", password="pw")


# --- error mapping: Zoho OAuth -------------------------------------------------------------------

MINT_LIMIT = {
    "error": "Access Denied",
    "error_description": "You have made too many requests continuously. "
    "Please try again after some time.",
}
OAUTH_ERRORS = [
    (400, MINT_LIMIT, MintLimitError),
    (200, MINT_LIMIT, MintLimitError),
    (400, {"error": "Access Denied"}, MintLimitError),
    (429, MINT_LIMIT, MintLimitError),
    (429, "", ThrottledError),
    (200, {"error": "invalid_code"}, AuthError),
    (400, {"error": "invalid_code"}, AuthError),
    (400, {"error": "invalid_client"}, AuthError),
    (200, {"error": "invalid_client_secret"}, AuthError),
    (401, {"error": "brand_new_error"}, AuthError),
    (400, {"error": "brand_new_error"}, ResponseError),
    (500, HTML, TransientError),
    (200, HTML, ResponseError),
    (200, {"token_type": "Bearer"}, ResponseError),
    (200, ["access_token"], ResponseError),
]


@pytest.mark.parametrize(("status", "body", "error"), OAUTH_ERRORS)
def test_mint_error_mapping(client, rsps, status, body, error):
    kwargs = {"json": body} if isinstance(body, (dict, list)) else {"body": body}
    rsps.post(ZOHO + "/oauth/v2/token", status=status, headers={"Retry-After": "60"}, **kwargs)
    with pytest.raises(error) as info:
        client.mint_access_token(client_id="1000.ID", client_secret="sec", refresh_token="1000.rt")
    assert type(info.value) is error
    if isinstance(info.value, TransientError):
        assert info.value.retry_after == 60.0


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"error": "invalid_code"}, AuthError),
        ({"error": "invalid_client"}, AuthError),
        ({"access_token": ACCESS, "expires_in": 3600}, ResponseError),  # no refresh token
    ],
)
def test_exchange_errors(client, rsps, body, error):
    rsps.post(ZOHO + "/oauth/v2/token", json=body)
    with pytest.raises(error):
        client.exchange_grant_code(client_id="1000.ID", client_secret="sec", code="1000.code")


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"status": "failure", "error": "invalid_token"}, UnknownTokenError),
        (200, {"status": "failure", "error": "invalid_token"}, UnknownTokenError),
        (400, {"status": "failure"}, ResponseError),
        (200, {"status": "maybe"}, ResponseError),
        (200, [], ResponseError),
        (503, "", TransientError),
    ],
)
def test_revoke_errors(client, rsps, status, body, error):
    kwargs = {"json": body} if isinstance(body, (dict, list)) else {"body": body}
    rsps.post(ZOHO + "/oauth/v2/token/revoke", status=status, **kwargs)
    with pytest.raises(error) as info:
        client.revoke_refresh_token(refresh_token="1000.rt")
    assert type(info.value) is error


# --- messages, masking, repr ---------------------------------------------------------------------


def test_upstream_text_is_scrubbed_and_truncated(client, rsps):
    echo = f"Invalid authtoken {TOKEN} " + "x" * 500
    rsps.get(
        API + "/api/monitor_groups/status", status=400, json={"error_code": 9, "message": echo}
    )
    with pytest.raises(ResponseError) as info:
        client.monitor_groups_status(authtoken=TOKEN, zaid=ZAID)
    text = str(info.value)
    assert TOKEN not in text and "••••" in text
    assert len(text) <= 240


def test_mask_secret():
    assert mask_secret("0123456789abcdef") == "••••cdef"
    assert mask_secret("0123456789abcde") == "••••"
    assert mask_secret("") == "••••"
    assert mask_secret(None) == "••••"


def test_secret_dataclass_reprs_are_masked():
    tokens = OAuthTokens(
        refresh_token="1000.refresh.abcdefghijkl", access_token=ACCESS, expires_in=3600
    )
    for text in (repr(tokens), str(tokens)):
        assert "1000.refresh.abcdefghijkl" not in text and ACCESS not in text
        assert "••••ijkl" in text and "••••a7b8" in text and "3600" in text
    access = AccessToken(token="short", expires_in=5)
    assert repr(access) == "AccessToken(token='••••', expires_in=5)"
    assert tokens.refresh_token == "1000.refresh.abcdefghijkl"  # the value itself is intact


def test_error_repr_and_pickle():
    import pickle

    exc = ThrottledError(
        "slow down", http_status=429, code=1003, endpoint="portals", retry_after=7.0
    )
    assert repr(exc) == (
        "ThrottledError('slow down', http_status=429, code=1003, endpoint='portals', "
        "retry_after=7.0)"
    )
    again = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own object
    assert (type(again), str(again), again.retry_after, again.code) == (
        ThrottledError,
        "slow down",
        7.0,
        1003,
    )
    assert issubclass(MintLimitError, ThrottledError) and issubclass(ThrottledError, TransientError)
    for cls in (
        AuthError,
        ResponseError,
        TokenLimitError,
        LoginError,
        UnknownTokenError,
        NotFoundError,
    ):
        assert issubclass(cls, Site24x7Error) and not issubclass(cls, TransientError)


# --- sessions, cookies, logging ------------------------------------------------------------------


def test_no_cookie_carries_over_between_customers(client, rsps):
    set_cookies = [("Set-Cookie", "clientportal=A; Path=/"), ("Set-Cookie", "zaaid=A; Path=/")]
    rsps.get(API + "/api/current_status", json=CURRENT_BODY, headers=set_cookies)
    rsps.get(API + "/api/monitor_groups/status", json=GROUPS_BODY, headers=set_cookies)
    client.current_status(access_token=ACCESS, zaaid="111")
    client.monitor_groups_status(authtoken=TOKEN, zaid="AAAA", zaid_via="cookie")
    client.current_status(access_token=ACCESS, zaaid="222")
    client.monitor_groups_status(authtoken=TOKEN, zaid="BBBB")
    headers = [call.request.headers for call in rsps.calls]
    assert headers[1]["Cookie"] == "clientportal=AAAA"
    assert headers[2]["Cookie"] == "zaaid=222"
    assert "Cookie" not in headers[3]
    assert len(client._transport.session().cookies) == 0


def test_session_per_thread_with_large_pool(client):
    main = client._transport.session()
    assert client._transport.session() is main
    other = []
    thread = threading.Thread(target=lambda: other.append(client._transport.session()))
    thread.start()
    thread.join()
    assert other[0] is not main
    adapter = main.get_adapter("https://www.site24x7.com")
    assert adapter._pool_maxsize >= 32 and POOL_SIZE >= 32
    assert adapter.max_retries.total == 0
    client.close()
    assert client._transport.session() is not main


def test_debug_log_line_has_no_query_or_headers(client, rsps, caplog):
    caplog.set_level(logging.DEBUG)
    rsps.get(API + "/api/monitor_groups/status", json=GROUPS_BODY)
    client.monitor_groups_status(authtoken=TOKEN, zaid=ZAID)
    lines = [r.getMessage() for r in caplog.records if r.name == "msp_dashboard.site24x7"]
    assert len(lines) == 1
    assert lines[0].startswith("GET www.site24x7.com/api/monitor_groups/status -> 200 in ")
    assert "zaid" not in lines[0] and TOKEN not in caplog.text


# --- raw sockets: a hang and a reset over real TCP -----------------------------------------------


class _RawServer:
    """Accepts connections and either never answers (hang) or resets them (reset)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            if self.mode == "cookie":  # one keep-alive answer that sets a cookie
                conn.recv(65536)
                body = b'{"code": 0, "data": []}'
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Set-Cookie: clientportal=LEAK; Path=/\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                self.held.append(conn)
            elif self.mode == "reset":
                conn.recv(65536)
                conn.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                conn.close()
            else:
                self.held.append(conn)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def raw_server(request):
    server = _RawServer(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("raw_server", ["hang"], indirect=True)
def test_hang_becomes_transient_error_within_read_timeout(raw_server):
    c = Site24x7Client(
        "US", api_url=raw_server.url, accounts_url=raw_server.url, timeout=(0.5, 0.4)
    )
    started = time.monotonic()
    with pytest.raises(TransientError, match="did not answer in time") as info:
        c.current_status(access_token=ACCESS, zaaid="1")
    assert time.monotonic() - started < 1.5
    assert info.value.__context__ is None
    c.close()


@pytest.mark.parametrize("raw_server", ["cookie"], indirect=True)
@pytest.mark.parametrize("adapter_class", [PooledAdapter, requests.adapters.HTTPAdapter])
def test_the_adapter_copies_no_cookie_into_the_response(raw_server, adapter_class):
    """Our adapter answers as requests' does (status, headers, body, url), without the cookie
    jar requests fills from Set-Cookie (no one reads it); requests' own does fill it."""
    prepared = requests.Request("GET", raw_server.url + "/api/x").prepare()
    adapter = adapter_class()
    try:
        response = adapter.send(prepared, timeout=(1, 1))
        assert response.status_code == 200 and response.json() == {"code": 0, "data": []}
        assert response.headers["Set-Cookie"] == "clientportal=LEAK; Path=/"
        assert response.url == raw_server.url + "/api/x" and response.connection is adapter
        assert response.raw._original_response is not None  # hidden only for the call
        kept = dict(response.cookies)
    finally:
        adapter.close()
    assert kept == ({} if adapter_class is PooledAdapter else {"clientportal": "LEAK"})


@pytest.mark.parametrize("raw_server", ["reset"], indirect=True)
def test_connection_reset_becomes_transient_error(raw_server):
    c = Site24x7Client(
        "US", api_url=raw_server.url, accounts_url=raw_server.url, timeout=(0.5, 1.0)
    )
    with pytest.raises(TransientError, match="could not talk to Site24x7"):
        c.mint_access_token(client_id="i", client_secret="s", refresh_token="r")
    c.close()


@pytest.mark.parametrize("timeout", [None, 5, (1,), (0, 1), (1, None), (1, float("inf")), [1, 2]])
def test_timeouts_are_mandatory(timeout):
    with pytest.raises(ConfigurationError, match="timeout"):
        Site24x7Client("US", timeout=timeout)


def test_sessions_of_finished_threads_are_released(client):
    import gc

    thread = threading.Thread(target=client._transport.session)
    thread.start()
    thread.join()
    del thread
    gc.collect()
    assert len(client._transport._sessions) == 0


def test_proxy_and_ca_bundle_come_from_the_environment_read_once(monkeypatch):
    """Sessions do not rescan the environment per request (trust_env off); the transport
    reads proxies and the CA bundle for each origin once and passes them on every request."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "accounts.zoho.com")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    with Site24x7Client("US") as c:
        transport = c._transport
        assert transport.session().trust_env is False
        proxies, verify = transport.environment("https://www.site24x7.com/api/x")
        assert proxies["https"] == "http://proxy.example:3128"
        assert verify == "/etc/ssl/certs/ca-certificates.crt"
        assert transport.environment("https://accounts.zoho.com/oauth/v2/token")[0] == {}
        monkeypatch.setenv("HTTPS_PROXY", "http://other.example:3128")
        assert transport.environment("https://www.site24x7.com/api/y")[0] == proxies
