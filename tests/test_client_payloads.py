"""Parsing of real published Site24x7 payloads and of the status codes (no HTTP)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from msp_dashboard.site24x7 import (
    STATUS_SEVERITY,
    AuthError,
    GroupStatus,
    ResponseError,
    Status,
    parse_current_status,
    parse_monitor_groups_config,
    parse_monitor_groups_status,
    parse_msp_customers,
    parse_msp_monitors_status,
    parse_portals,
    parse_status,
    worst_status,
)


def _payload_dir() -> Path:
    candidates = [Path(__file__).resolve().parents[2] / "shared/site24x7/payloads"]
    if os.environ.get("SHARED_DIR"):
        candidates.append(Path(os.environ["SHARED_DIR"]) / "site24x7/payloads")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"payload fixtures not found in {candidates}; set SHARED_DIR")


PAYLOADS = _payload_dir()
PARSERS = {
    "monitor_groups_status-": parse_monitor_groups_status,
    "current_status-": parse_current_status,
    "monitor_groups-": parse_monitor_groups_config,
}


def G(group_id, name, status, monitors, errors, top=True):
    return GroupStatus(group_id, name, status, monitors, errors, top)


EXPECTED = {
    "monitor_groups_status-getting-started.json": [
        G("20390000087595", "zohocorp.com", Status.TROUBLE, 3, 1),
    ],
    "current_status-exporter-full.json": [
        G("01", "production", Status.DOWN, 3, 1),
        G("02", "integration", Status.UP, 1, 0),
    ],
    "current_status-terraform-list.json": [],
    "current_status-exporter-down_monitor.json": [],
    "current_status-exporter-empty_lists.json": [],
    "current_status-exporter-empty_response.json": [],
    "monitor_groups-terraform-list.json": [
        G("797300000123437", "misc", Status.UNKNOWN, 4, 0),
        G("79123400003075053", "api", Status.UNKNOWN, 0, 0),
        G("79730456703075223", "web", Status.UNKNOWN, 0, 0),
    ],
}


def load(name: str) -> dict:
    return json.loads((PAYLOADS / name).read_text())


def parse_file(name: str) -> list[GroupStatus]:
    parser = next(parser for prefix, parser in PARSERS.items() if name.startswith(prefix))
    return parser(load(name))


def test_every_payload_file_has_an_expectation():
    files = {path.name for path in PAYLOADS.glob("*.json")}
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_payload_parses_into_expected_summary(name):
    assert parse_file(name) == EXPECTED[name]


# --- status codes --------------------------------------------------------------------------------

STATUS_MATRIX = [
    (0, Status.DOWN),
    (1, Status.UP),
    (2, Status.TROUBLE),
    (3, Status.CRITICAL),
    (4, Status.UNKNOWN),
    (5, Status.SUSPENDED),
    (6, Status.UNKNOWN),
    (7, Status.MAINTENANCE),
    (8, Status.UNKNOWN),
    (9, Status.DISCOVERY),
    (10, Status.CONFIG_ERROR),
    (11, Status.UNKNOWN),
    (-1, Status.UNKNOWN),
    ("0", Status.DOWN),
    (" 2", Status.TROUBLE),
    ("10\n", Status.CONFIG_ERROR),
    ("+1", Status.UP),
    ("2.0", Status.TROUBLE),
    (2.0, Status.TROUBLE),
    (2.5, Status.UNKNOWN),
    (float("nan"), Status.UNKNOWN),
    (float("inf"), Status.UNKNOWN),
    (None, Status.UNKNOWN),
    ("", Status.UNKNOWN),
    ("abc", Status.UNKNOWN),
    ("1" * 5000, Status.UNKNOWN),
    ("1" * 20, Status.UNKNOWN),
    ("Down", Status.UNKNOWN),
    (True, Status.UNKNOWN),
    (False, Status.UNKNOWN),
    ([1], Status.UNKNOWN),
    ({"status": 1}, Status.UNKNOWN),
]


@pytest.mark.parametrize(("value", "expected"), STATUS_MATRIX)
def test_parse_status_matrix(value, expected):
    assert parse_status(value) is expected


def test_status_labels_slugs_and_severity():
    assert [(s.label, s.slug) for s in Status] == [
        ("Down", "down"),
        ("Up", "up"),
        ("Trouble", "trouble"),
        ("Critical", "critical"),
        ("Suspended", "suspended"),
        ("Maintenance", "maintenance"),
        ("Discovery", "discovery"),
        ("Configuration Error", "config-error"),
        ("Unknown", "unknown"),
    ]
    assert [s.severity for s in STATUS_SEVERITY] == list(range(9))
    assert STATUS_SEVERITY[0] is Status.DOWN and STATUS_SEVERITY[-1] is Status.UP
    assert set(STATUS_SEVERITY) == set(Status)
    assert sorted(Status, key=lambda s: s.severity) == list(STATUS_SEVERITY)


def test_worst_status():
    assert worst_status([Status.UP, Status.TROUBLE, Status.CRITICAL]) is Status.CRITICAL
    assert worst_status([Status.UP, Status.SUSPENDED]) is Status.SUSPENDED
    assert worst_status([Status.UP, Status.UNKNOWN]) is Status.UNKNOWN
    assert worst_status(iter([Status.DOWN, Status.UP])) is Status.DOWN
    assert worst_status([]) is Status.UNKNOWN  # empty means "nothing known", never green


# --- tolerance: strings, ints, shapes ------------------------------------------------------------


def test_monitor_groups_status_accepts_strings_ints_and_subgroups():
    payload = {
        "code": "0",
        "data": [
            {
                "group_name": "a",
                "group_id": 1,
                "monitors": "3",
                "status": "0",
                "error_monitors": "2",
            },
            {"group_name": "b", "group_id": "2", "monitors": 1, "status": " 1", "top_group": False},
            {"display_name": "c", "group_id": "3", "monitors": [1, 2], "status": "zz"},
        ],
    }
    assert parse_monitor_groups_status(payload) == [
        G("1", "a", Status.DOWN, 3, 2),
        G("2", "b", Status.UP, 1, 0, top=False),
        G("3", "c", Status.UNKNOWN, 2, 0),
    ]


def test_string_statuses_in_published_payloads():
    payload = load("current_status-exporter-full.json")
    for group in payload["data"]["monitor_groups"]:
        group["status"] = str(group["status"])
        for monitor in group["monitors"]:
            monitor["status"] = str(monitor["status"])
    assert parse_current_status(payload) == EXPECTED["current_status-exporter-full.json"]
    legacy = load("monitor_groups_status-getting-started.json")
    legacy["data"][0]["status"] = "2"
    legacy["data"][0]["group_id"] = int(legacy["data"][0]["group_id"])
    assert (
        parse_monitor_groups_status(legacy)
        == EXPECTED["monitor_groups_status-getting-started.json"]
    )


def test_current_status_group_without_own_status_takes_worst_monitor():
    payload = load("current_status-exporter-full.json")
    group = payload["data"]["monitor_groups"][0]
    del group["status"]
    group["monitors"][1]["status"] = 2
    assert parse_current_status(payload)[0] == G("01", "production", Status.DOWN, 3, 2)
    group["monitors"][0]["status"] = "1"
    assert parse_current_status(payload)[0] == G("01", "production", Status.TROUBLE, 3, 1)


def test_current_status_counts_every_non_up_monitor_as_error():
    monitors = [{"status": s} for s in (1, 5, 7, 9, 10, "x")]
    payload = {
        "code": 0,
        "data": {"monitor_groups": [{"group_id": 9, "group_name": "g", "monitors": monitors}]},
    }
    assert parse_current_status(payload) == [G("9", "g", Status.CONFIG_ERROR, 6, 5)]


def test_current_status_group_with_integer_counters():
    group = {
        "group_id": "7",
        "group_name": "n",
        "status": 2,
        "monitors": 4,
        "troubleMonitorsCount": 1,
    }
    payload = {"code": 0, "data": {"monitor_groups": [group]}}
    assert parse_current_status(payload) == [G("7", "n", Status.TROUBLE, 4, 1)]


def test_current_status_group_without_monitors_is_unknown():
    payload = {"code": 0, "data": {"monitor_groups": [{"group_id": "e", "group_name": "empty"}]}}
    assert parse_current_status(payload) == [G("e", "empty", Status.UNKNOWN, 0, 0)]


@pytest.mark.parametrize("data", [{}, [], None, {"monitors": []}, {"monitor_groups": None}])
def test_current_status_empty_forms(data):
    assert parse_current_status({"code": 0, "message": "success", "data": data}) == []


def test_current_status_tolerates_dash_values_and_offsets():
    payload = load("current_status-terraform-list.json")
    payload["data"]["monitor_groups"] = [
        {"group_id": "g", "group_name": "G", "monitors": payload["data"]["monitors"]}
    ]
    assert parse_current_status(payload) == [G("g", "G", Status.DOWN, 2, 2)]


BAD_SHAPES = [
    [],
    "text",
    None,
    {"code": 0},
    {"code": 0, "data": "oops"},
    {"code": 0, "data": [1, 2]},
    {"code": 0, "data": [{"group_name": "no id"}]},
    {"code": 0, "data": [{"group_id": {"x": 1}}]},
    {"code": 0, "data": [{"group_id": "1", "monitors": {"a": 1}}]},
    {"code": 0, "data": [{"group_id": "1", "monitors": -3}]},
    {"code": 0, "data": [{"group_id": "1", "monitors": "9" * 5000}]},
    {"code": 0, "data": {"unrelated": [1]}},
]


@pytest.mark.parametrize("payload", BAD_SHAPES)
def test_monitor_groups_status_wrong_shape(payload):
    with pytest.raises(ResponseError):
        parse_monitor_groups_status(payload)


@pytest.mark.parametrize(
    "payload",
    [
        {"code": 0, "data": "x"},
        {"code": 0, "data": [{"group_id": "1"}]},
        {"code": 0, "data": {"monitor_groups": {"group_id": "1"}}},
        {"code": 0, "data": {"monitor_groups": [{"group_id": "1", "monitors": [1]}]}},
        {"code": 0, "data": {"monitor_groups": [{"group_name": "no id", "monitors": []}]}},
        {"code": 0, "data": {"monitor_groups": [{"group_id": True, "monitors": []}]}},
    ],
)
def test_current_status_wrong_shape(payload):
    payload = copy.deepcopy(payload)
    with pytest.raises(ResponseError):
        parse_current_status(payload)


@pytest.mark.parametrize("parser", [parse_monitor_groups_status, parse_current_status])
def test_non_zero_code_is_a_response_error(parser):
    with pytest.raises(ResponseError) as info:
        parser({"code": 7, "message": "Something odd", "data": []})
    assert info.value.code == 7
    with pytest.raises(ResponseError):
        parser({"error_code": 2009, "message": "Invalid Monitor ID."})


@pytest.mark.parametrize("parser", [parse_monitor_groups_status, parse_current_status])
def test_auth_error_envelope_is_an_auth_error(parser):
    with pytest.raises(AuthError):
        parser({"error_code": 1102, "message": "OAuth Access Token is invalid or has expired."})
    with pytest.raises(AuthError):
        parser({"code": 1100, "message": "You are not authorized to perform this operation"})


def test_parse_portals_tolerant_shapes():
    data = [
        {"portal_id": 12353635607, "zaid": "j2db7FrteGyJWxa/JjpJlw==", "name": "Acme Ltd"},
        {"portal_id": "2", "zaid": "b", "display_name": "Beta"},
        {"portal_id": "3", "zaid": "c", "customer_company": "Gamma"},
        {"portal_id": "4", "zaid": "d", "portal_name": "delta"},
    ]
    expected = ["Acme Ltd", "Beta", "Gamma", "delta"]
    for payload in ({"code": 0, "data": data}, {"code": 0, "data": {"portals": data}}):
        portals = parse_portals(payload)
        assert [p.name for p in portals] == expected
        assert (
            portals[0].portal_id == "12353635607" and portals[0].zaid == "j2db7FrteGyJWxa/JjpJlw=="
        )
    with pytest.raises(ResponseError):
        parse_portals({"code": 0, "data": [{"portal_id": "1"}]})


def test_parse_msp_customers():
    payload = {
        "code": 0,
        "data": [{"name": "Acme", "zaaid": 658123456, "user_id": "9"}, {"name": "B", "zaaid": "1"}],
    }
    customers = parse_msp_customers(payload)
    assert [(c.name, c.zaaid, c.user_id) for c in customers] == [
        ("Acme", "658123456", "9"),
        ("B", "1", ""),
    ]
    assert parse_msp_customers({"code": 0, "data": {"customers": []}}) == []


def test_parse_msp_monitors_status():
    payload = {
        "code": 0,
        "data": [
            {
                "zaaid": "100",
                "customer_name": "Acme",
                "monitors": [
                    {"monitor_id": "m1", "status": 0, "group_ids": ["g1"]},
                    {"monitor_id": "m2", "status": "1", "group_ids": ["g1", "g2"]},
                    {
                        "monitor_id": "m3",
                        "status": 2,
                        "last_polled_time": "2026-11-27T10:00:00+0530",
                    },
                ],
                "monitor_groups": [
                    {"group_id": "g1", "group_name": "Web", "status": 0},
                    {"group_id": "g2", "group_name": "DB"},
                    {"group_id": "g3", "group_name": "Listed", "monitors": ["m3"]},
                ],
            },
            {"zaaid": 200, "customer_name": "Flat", "monitors": [{"status": 1}, {"status": 3}]},
            {"zaaid": "300", "customer_name": "Empty", "monitors": []},
        ],
    }
    assert parse_msp_monitors_status(payload) == {
        "100": [
            G("g1", "Web", Status.DOWN, 2, 1),
            G("g2", "DB", Status.UP, 1, 0),
            G("g3", "Listed", Status.TROUBLE, 1, 1),
        ],
        "200": [G("all", "All monitors", Status.CRITICAL, 2, 1)],
        "300": [],
    }
    with pytest.raises(ResponseError):
        parse_msp_monitors_status({"code": 0, "data": [{"customer_name": "no zaaid"}]})
