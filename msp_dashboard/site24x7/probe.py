"""Probe a Site24x7 account: try each flow once, read-only, and say what works.

Pure (no Django): `manage.py site24x7_probe` gathers the credentials, calls `run_probe` and
prints `render_table` (or writes `ProbeReport.to_dict()` as JSON). The requests are the ones
the client itself sends (`Site24x7Client.prepare_*`), sent through `send_raw` so the status,
the headers and the body can be looked at. Nothing here prints or keeps a body: only the
envelope code and message (scrubbed of every secret, at most 200 characters), field names,
the monitor status values seen, and rate-limit headers.

Nothing is created or deleted upstream. The one call with a cost is the OAuth mint (Zoho allows
10 per refresh token per 10 minutes): pass an `access_token` supplier (the dashboard's shared
cache) instead of an identity to avoid it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .classify import Context, check_response
from .client import CURRENT_STATUS, MONITOR_GROUPS_STATUS, ApiCall, Site24x7Client
from .errors import (
    AuthError,
    ConfigurationError,
    MintLimitError,
    NotFoundError,
    ResponseError,
    Site24x7Error,
    ThrottledError,
    TransientError,
)
from .redact import MASK, mask_secret, scrub, secret_forms
from .types import Auth, MspCustomer

OK, FAIL, SKIP = "ok", "FAIL", "skip"
NEEDED, ALTERNATIVE, OPTIONAL = "needed", "alternative", "optional"
EXIT_OK, EXIT_FAILED, EXIT_NO_CREDENTIALS = 0, 1, 2
MAX_NAMES = 20
MAX_STATUSES = 15
_RATE_HEADER = re.compile(r"(x-)?(rate-?limit|ratelimit)([-_].*)?|retry-after", re.IGNORECASE)
_FIELD_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,60}")
_SOURCE_LABEL = {MONITOR_GROUPS_STATUS: "monitor_groups_status", CURRENT_STATUS: "current_status"}
_SELECTOR_LABEL = {
    ("legacy", "param"): "?zaid=",
    ("legacy", "cookie"): "cookie clientportal=",
    ("oauth", "param"): "?zaaid=",
    ("oauth", "cookie"): "cookie zaaid=",
}
_SWITCHES = {
    "legacy": ("SITE24X7_LEGACY_STATUS_SOURCE", "SITE24X7_ZAID_VIA"),
    "oauth": ("SITE24X7_OAUTH_STATUS_SOURCE", "SITE24X7_ZAAID_VIA"),
}


# --- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class OAuthIdentity:
    """A Zoho Self Client identity, for a direct mint (the `.env` case)."""

    client_id: str
    client_secret: str
    refresh_token: str

    def __repr__(self) -> str:
        return f"OAuthIdentity({self.client_id[:9]!r}…, {mask_secret(self.refresh_token)!r})"


# `supplier(rejected)` returns an access token; `rejected` is a token Site24x7 just refused.
AccessTokenSupplier = Callable[[str | None], str]


@dataclass(frozen=True)
class Switches:
    """The settings of issue 10 that decide which requests the refresh sends."""

    legacy_status_source: str = MONITOR_GROUPS_STATUS
    oauth_status_source: str = CURRENT_STATUS
    zaid_via: str = "param"
    zaaid_via: str = "cookie"
    accept_version: str = "2.0"

    def configured(self, generation: str) -> tuple[str, str]:
        if generation == "legacy":
            return self.legacy_status_source, self.zaid_via
        return self.oauth_status_source, self.zaaid_via


@dataclass(repr=False)
class LegacySetup:
    """Legacy credentials: the MSP authtoken (portal listing) and one customer's portal
    authtoken with that customer's zaid (monitor-group status)."""

    client: Site24x7Client
    msp_authtoken: str | None = None
    portal_authtoken: str | None = None
    zaid: str | None = None
    customer_name: str = ""


@dataclass(repr=False)
class OAuthSetup:
    """The MSP's OAuth identity: a cached-token `access_token` supplier (preferred) or an
    `identity` to mint with. `zaaid` picks the customer; else `customer_name` is looked up in
    the customer list; else the first listed customer is used."""

    client: Site24x7Client
    identity: OAuthIdentity | None = None
    access_token: AccessTokenSupplier | None = None
    zaaid: str | None = None
    customer_name: str = ""


# --- results ----------------------------------------------------------------------------------


@dataclass
class ProbeRow:
    """One flow tried once. Never holds a secret or a body."""

    flow: str
    label: str
    endpoint: str
    role: str
    result: str = SKIP
    error: str = ""
    http_status: int | None = None
    code: str = ""
    message: str = ""
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    rate_limit: dict[str, str] = field(default_factory=dict)
    note: str = ""
    generation: str = ""
    source: str = ""
    via: str = ""

    @property
    def failed(self) -> bool:
        return self.result == FAIL

    @property
    def shape(self) -> str:
        if self.http_status is None:
            return "-"
        if not self.missing and not self.unexpected:
            return "match" if self.result == OK else "-"
        parts = []
        if self.missing:
            parts.append("missing " + ",".join(self.missing))
        if self.unexpected:
            parts.append("unexpected " + ",".join(self.unexpected))
        return "; ".join(parts)


@dataclass
class ProbeReport:
    rows: list[ProbeRow]
    switches: Switches
    suggestions: list[str] = field(default_factory=list)
    hosts: dict[str, dict[str, str]] = field(default_factory=dict)
    customers: dict[str, str] = field(default_factory=dict)
    # Masks every secret the probe saw (credentials and minted tokens) in any text: a last
    # pass over the rendered table or report. Not part of `to_dict`.
    redact: Callable[[str], str] = field(default=str, repr=False, compare=False)

    @property
    def exit_status(self) -> int:
        if not self.rows:
            return EXIT_NO_CREDENTIALS
        needed_failed = any(row.failed and row.role == NEEDED for row in self.rows)
        return EXIT_FAILED if needed_failed else EXIT_OK

    @property
    def verdict(self) -> str:
        return {
            EXIT_OK: "the configured setup works",
            EXIT_FAILED: "something the configured setup needs failed",
            EXIT_NO_CREDENTIALS: "no credentials configured",
        }[self.exit_status]

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for row in self.rows:
            data = asdict(row)
            data["shape"] = row.shape
            rows.append(data)
        return {
            "exit_status": self.exit_status,
            "verdict": self.verdict,
            "switches": asdict(self.switches),
            "hosts": self.hosts,
            "customers": self.customers,
            "rows": rows,
            "suggestions": self.suggestions,
        }


# --- the probe --------------------------------------------------------------------------------


class _Secrets:
    """Every secret seen so far (credentials, minted tokens): scrubbed from all text."""

    def __init__(self, values: Iterable[str | None]) -> None:
        self.values = [value for value in values if value]

    def add(self, value: str | None) -> None:
        if value:
            self.values.append(value)

    def text(self, value: object) -> str:
        """One line, at most 200 characters, secrets masked (for a field)."""
        return scrub(value, self.values)

    def redact(self, text: str) -> str:
        """`text` as it is, with every form of every secret masked (for a whole document)."""
        forms = {form for value in self.values for form in secret_forms(value)}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, MASK)
        return text


def run_probe(
    *,
    legacy: LegacySetup | None = None,
    oauth: OAuthSetup | None = None,
    switches: Switches | None = None,
    preflight: Iterable[ProbeRow] = (),
) -> ProbeReport:
    """Try every flow the given credentials allow, once each, and judge the answers."""
    switches = switches or Switches()
    secrets = _Secrets(_setup_secrets(legacy, oauth))
    report = ProbeReport(rows=list(preflight), switches=switches)
    if legacy is not None:
        report.hosts["legacy"] = _hosts(legacy.client)
        report.rows.extend(_legacy_rows(legacy, switches, secrets, report))
    if oauth is not None:
        report.hosts["oauth"] = _hosts(oauth.client)
        report.rows.extend(_oauth_rows(oauth, switches, secrets, report))
    for row in report.rows:
        _clean(row, secrets)
    report.suggestions = [secrets.redact(text) for text in suggest(report)]
    report.redact = secrets.redact
    return report


def _setup_secrets(legacy: LegacySetup | None, oauth: OAuthSetup | None) -> list[str | None]:
    values: list[str | None] = []
    if legacy is not None:
        values += [legacy.msp_authtoken, legacy.portal_authtoken]
    if oauth is not None and oauth.identity is not None:
        values += [oauth.identity.client_secret, oauth.identity.refresh_token]
    return values


def _hosts(client: Site24x7Client) -> dict[str, str]:
    return {
        "data_centre": client.data_centre.code,
        "api": client.api_url,
        "accounts": client.accounts_url,
    }


# --- legacy flows -----------------------------------------------------------------------------


def _legacy_rows(
    setup: LegacySetup, switches: Switches, secrets: _Secrets, report: ProbeReport
) -> list[ProbeRow]:
    rows = []
    portals = ProbeRow("portals", "portals (MSP authtoken)", "portals", NEEDED, generation="legacy")
    msp_authtoken = setup.msp_authtoken
    if msp_authtoken:
        call = _prepare(
            portals, secrets, lambda: setup.client.prepare_list_portals(msp_authtoken=msp_authtoken)
        )
        value = _attempt(setup.client, call, portals, secrets)
        if value is not None:
            portals.note = f"{len(value)} portals"
    else:
        portals.note = "no MSP authtoken configured"
    rows.append(portals)
    if setup.zaid:
        report.customers["legacy"] = setup.customer_name
    for source, via in _status_variants("legacy", switches):
        row = _status_row("legacy", source, via, switches)
        if not setup.portal_authtoken or not setup.zaid:
            row.note = "no customer portal authtoken configured"
        else:
            _status_attempt(
                setup.client, row, Auth.legacy(setup.portal_authtoken), setup.zaid, secrets
            )
        rows.append(row)
    return rows


def _status_variants(generation: str, switches: Switches) -> list[tuple[str, str]]:
    """Both selectors of the generation's usual source, the other source with the configured
    selector, and the configured pair (if not already in)."""
    usual = MONITOR_GROUPS_STATUS if generation == "legacy" else CURRENT_STATUS
    other = CURRENT_STATUS if usual == MONITOR_GROUPS_STATUS else MONITOR_GROUPS_STATUS
    first, second = ("param", "cookie") if generation == "legacy" else ("cookie", "param")
    configured = switches.configured(generation)
    variants = [(usual, first), (usual, second), (other, configured[1])]
    return variants if configured in variants else [*variants, configured]


def _status_row(generation: str, source: str, via: str, switches: Switches) -> ProbeRow:
    scheme = "authtoken" if generation == "legacy" else "OAuth"
    label = f"{_SOURCE_LABEL[source]} ({scheme}, {_SELECTOR_LABEL[(generation, via)]})"
    role = NEEDED if switches.configured(generation) == (source, via) else ALTERNATIVE
    flow = f"{source}/{generation}/{via}"
    return ProbeRow(flow, label, source, role, generation=generation, source=source, via=via)


def _status_attempt(
    client: Site24x7Client, row: ProbeRow, auth: Auth, customer_ref: str, secrets: _Secrets
) -> None:
    call = _prepare(
        row,
        secrets,
        lambda: client.prepare_customer_status(
            source=row.source, auth=auth, customer_ref=customer_ref, via=row.via
        ),
    )
    _attempt(client, call, row, secrets)


# --- OAuth flows ------------------------------------------------------------------------------


def _oauth_rows(
    setup: OAuthSetup, switches: Switches, secrets: _Secrets, report: ProbeReport
) -> list[ProbeRow]:
    token_row = ProbeRow("oauth_token", "OAuth access token", "oauth_token", NEEDED)
    token_row.generation = "oauth"
    token = _access_token(setup, token_row, secrets)
    rows = [token_row]
    listing = ProbeRow("short_customers", "short customer list", "short_customers", NEEDED)
    listing.generation = "oauth"
    rows.append(listing)
    customers: list[MspCustomer] | None = None
    if token is None:
        listing.note = "no access token"
    else:
        customers, token = _list_customers(setup, token, listing, secrets)
    zaaid, why_not = _pick_customer(setup, customers, report)
    for source, via in _status_variants("oauth", switches):
        row = _status_row("oauth", source, via, switches)
        if token is None:
            row.note = "no access token"
        elif zaaid is None:
            row.note = why_not
            if why_not.startswith("customer") and row.role == NEEDED:
                row.result, row.error = FAIL, "config"
        else:
            _status_attempt(setup.client, row, Auth.oauth(token), zaaid, secrets)
        rows.append(row)
    wide = ProbeRow(
        "msp_monitors_status",
        "MSP-wide customer status",
        "msp_monitors_status",
        OPTIONAL,
        generation="oauth",
    )
    if token is None:
        wide.note = "no access token"
    else:
        call = _prepare(
            wide, secrets, lambda: setup.client.prepare_msp_monitors_status(access_token=token)
        )
        value = _attempt(setup.client, call, wide, secrets)
        if value is not None:
            wide.note = f"{len(value)} customers in one call"
    rows.append(wide)
    return rows


def _access_token(setup: OAuthSetup, row: ProbeRow, secrets: _Secrets) -> str | None:
    if setup.access_token is not None:
        row.label = "OAuth access token (shared cache)"
        return _supplied_token(setup.access_token, None, row, secrets)
    if setup.identity is None:
        row.role, row.note = OPTIONAL, "no OAuth identity configured"
        return None
    row.label = "OAuth mint"
    identity = setup.identity
    call = _prepare(
        row,
        secrets,
        lambda: setup.client.prepare_mint_access_token(
            client_id=identity.client_id,
            client_secret=identity.client_secret,
            refresh_token=identity.refresh_token,
        ),
    )
    minted = _attempt(setup.client, call, row, secrets)
    if minted is None:
        return None
    secrets.add(minted.token)
    row.note = f"expires in {minted.expires_in} s"
    return minted.token


def _supplied_token(
    supplier: AccessTokenSupplier, rejected: str | None, row: ProbeRow, secrets: _Secrets
) -> str | None:
    try:
        token = supplier(rejected)
    except Site24x7Error as exc:
        _failed(row, exc, secrets)
        row.http_status = exc.http_status
        row.code = secrets.text(exc.code)[:40] if exc.code is not None else ""
        return None
    secrets.add(token)
    row.result = OK
    row.note = "from the dashboard's shared token cache (minted only when needed)"
    return token


def _list_customers(
    setup: OAuthSetup, token: str, row: ProbeRow, secrets: _Secrets
) -> tuple[list[MspCustomer] | None, str | None]:
    def attempt(current: str) -> list[MspCustomer] | None:
        call = _prepare(
            row, secrets, lambda: setup.client.prepare_list_msp_customers(access_token=current)
        )
        return _attempt(setup.client, call, row, secrets)

    customers = attempt(token)
    if customers is None and setup.access_token is not None and row.http_status == 401:
        # The cached token may be stale: one replacement, as the refresh does.
        try:
            fresh = setup.access_token(token)
        except Site24x7Error as exc:
            row.note = f"replacing the refused cached access token failed: {secrets.text(exc)}"
            return None, None
        secrets.add(fresh)
        _reset(row)
        customers = attempt(fresh)
        row.note = "the cached access token was refused; a fresh one was minted"
        token = fresh
    if customers is not None:
        row.note = (row.note + "; " if row.note else "") + f"{len(customers)} customers"
    return customers, token


def _pick_customer(
    setup: OAuthSetup, customers: list[MspCustomer] | None, report: ProbeReport
) -> tuple[str | None, str]:
    """(zaaid, "") of the customer to read, or (None, why not)."""
    if setup.zaaid:
        report.customers["oauth"] = setup.customer_name or setup.zaaid
        return setup.zaaid, ""
    if customers is None:
        return None, "the customer list failed, so there is no customer to read"
    if not customers:
        return None, "the customer list is empty"
    wanted = setup.customer_name.strip().lower()
    if wanted:
        match = next((c for c in customers if c.name.strip().lower() == wanted), None)
        if match is None:
            report.customers["oauth"] = f"{setup.customer_name} (not in the customer list)"
            return None, f"customer {setup.customer_name!r} is not in the customer list"
    else:
        match = customers[0]
    report.customers["oauth"] = match.name
    return match.zaaid, ""


# --- one attempt ------------------------------------------------------------------------------


def _prepare(row: ProbeRow, secrets: _Secrets, build: Callable[[], ApiCall[Any]]):
    """The prepared call, or None (row marked failed) when the client refuses to build it."""
    try:
        return build()
    except (ConfigurationError, ValueError) as exc:
        _failed(row, exc, secrets)
        return None


def _attempt(
    client: Site24x7Client, call: ApiCall[Any] | None, row: ProbeRow, secrets: _Secrets
) -> Any:
    """Send `call` once; fill in `row`; the read value on success, else None."""
    if call is None:
        return None
    try:
        answer = client.send_raw(call)
    except Site24x7Error as exc:  # no answer at all (timeout, reset, TLS) or refused host
        _failed(row, exc, secrets)
        return None
    row.http_status = answer.status
    row.rate_limit = rate_limit_headers(answer.headers, secrets)
    payload = _decode(answer.content)
    row.code, row.message = envelope(payload, answer.content, call.family, secrets)
    row.missing, row.unexpected = compare_shape(call.endpoint, payload)
    row.statuses = statuses_seen(call.endpoint, payload)
    ctx = Context(endpoint=call.endpoint, family=call.family, secrets=secrets.values)
    try:
        value = call.read(check_response(answer.status, answer.headers, answer.content, ctx))
    except Site24x7Error as exc:
        _failed(row, exc, secrets, keep_message=True)
        return None
    row.result = OK
    return value


def _failed(row: ProbeRow, exc: Exception, secrets: _Secrets, keep_message: bool = False) -> None:
    row.result, row.error = FAIL, error_kind(exc)
    explanation = secrets.text(exc)
    if keep_message and row.message:
        row.note = explanation
    else:
        row.message = explanation


def _reset(row: ProbeRow) -> None:
    fresh = ProbeRow(row.flow, row.label, row.endpoint, row.role, generation=row.generation)
    for name in ("result", "error", "http_status", "code", "message", "note"):
        setattr(row, name, getattr(fresh, name))
    row.missing, row.unexpected, row.statuses, row.rate_limit = [], [], [], {}


def error_kind(exc: BaseException) -> str:
    """A short name for the kind of failure (the RESULT column)."""
    kinds: list[tuple[type[BaseException], str]] = [
        (MintLimitError, "mint-limit"),
        (ThrottledError, "throttled"),
        (TransientError, "transient"),
        (AuthError, "auth"),
        (NotFoundError, "not-found"),
        (ResponseError, "response"),
        (ConfigurationError, "config"),
        (ValueError, "config"),
    ]
    return next((name for cls, name in kinds if isinstance(exc, cls)), "error")


def _clean(row: ProbeRow, secrets: _Secrets) -> None:
    """Last pass: every text field scrubbed of every secret known at the end."""
    for name in ("label", "code", "message", "note"):
        value = getattr(row, name)
        if value:
            setattr(row, name, secrets.text(value))
    row.rate_limit = {key: secrets.text(value) for key, value in row.rate_limit.items()}


# --- reading an answer without keeping it ------------------------------------------------------


def rate_limit_headers(headers: Mapping[str, str], secrets: _Secrets) -> dict[str, str]:
    """`Retry-After`, `X-RateLimit-*`, `RateLimit-*` headers (values scrubbed, short)."""
    found = {}
    for name, value in headers.items():
        if _RATE_HEADER.fullmatch(name) and len(found) < 10:
            found[name] = secrets.text(value)[:80]
    return found


_NOT_JSON = object()


def _decode(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


def envelope(payload: Any, content: bytes, family: str, secrets: _Secrets) -> tuple[str, str]:
    """(code, message) of an answer: the Site24x7 envelope, the legacy accounts `cause`, or
    Zoho's `error`; a description when the body is not JSON. Never the body itself."""
    if not isinstance(payload, dict):
        return "", _describe_body(payload, content)
    code: Any = payload.get("error_code", payload.get("code"))
    message: Any = payload.get("message")
    data = payload.get("data")
    if isinstance(data, dict) and "cause" in data:
        code, message = data.get("cause"), message or "legacy accounts failure"
    if family == "oauth" and ("error" in payload or "status" in payload):
        code = payload.get("error") or payload.get("status")
        message = payload.get("error_description") or message
    shown_code = "" if code is None else secrets.text(code)[:40]
    return shown_code, "" if message is None else secrets.text(message)


def _describe_body(payload: Any, content: bytes) -> str:
    if not content.strip():
        return "(empty body)"
    if payload is not _NOT_JSON:
        return "(JSON without envelope)"
    head = content[:512].lstrip()
    if head.startswith(b"<"):
        return "(HTML page, not JSON)"
    if head[:1] in (b"{", b"["):
        return "(truncated or invalid JSON)"
    return "(not JSON)"


# What the client expects, per endpoint and level: (expected, also known). Each expected entry
# is a tuple of alternatives; the first names it when all are missing. "Unexpected" fields are
# neither: the client ignores them, the report names them.
_MONITOR_KNOWN = {
    "monitor_type",
    "last_polled_time",
    "attribute_key",
    "attribute_label",
    "attribute_value",
    "unit",
    "down_reason",
    "duration",
    "server_type",
    "outage_id",
    "downtime_millis",
    "tags",
    "locations",
}
Shape = tuple[tuple[tuple[str, ...], ...], frozenset[str]]
_SHAPES: dict[str, dict[str, Shape]] = {
    "portals": {
        "portal": (
            (("portal_id",), ("zaid",), ("name", "display_name", "customer_company")),
            frozenset({"portal_name", "display_name", "customer_company"}),
        )
    },
    "oauth_token": {
        "token": (
            (("access_token",), ("expires_in", "expires_in_sec")),
            frozenset({"api_domain", "token_type", "refresh_token", "scope", "expires_in_sec"}),
        )
    },
    "short_customers": {
        "customer": ((("name",), ("zaaid",), ("user_id",)), frozenset()),
    },
    "monitor_groups_status": {
        "group": (
            (
                ("group_id",),
                ("group_name", "display_name", "name"),
                ("status",),
                ("monitors",),
                ("error_monitors",),
                ("top_group",),
            ),
            frozenset({"display_name", "name"}),
        )
    },
    "current_status": {
        "data": ((("monitor_groups",),), frozenset({"monitors"})),
        "group": (
            (("group_id",), ("group_name", "display_name", "name"), ("status",), ("monitors",)),
            frozenset(
                {
                    "display_name",
                    "name",
                    "downMonitorsCount",
                    "criticalMonitorsCount",
                    "troubleMonitorsCount",
                    "threshold_count",
                }
            ),
        ),
        "monitor": ((("monitor_id",), ("name",), ("status",)), frozenset(_MONITOR_KNOWN)),
    },
    "msp_monitors_status": {
        "customer": (
            (("zaaid",), ("customer_name", "name"), ("monitors",)),
            frozenset({"monitor_groups", "name"}),
        ),
        "monitor": (
            (("status",), ("last_polled_time",)),
            frozenset({"monitor_id", "name", "group_ids", "monitor_type"}),
        ),
        "group": (
            (("group_id",),),
            frozenset({"group_name", "status", "display_name", "name", "monitors", "top_group"}),
        ),
    },
}


def compare_shape(endpoint: str, payload: Any) -> tuple[list[str], list[str]]:
    """(missing, unexpected) field names of a success answer, as `level.field`."""
    shapes = _SHAPES.get(endpoint)
    if shapes is None or not _is_success(endpoint, payload):
        return [], []
    missing: list[str] = []
    unexpected: set[str] = set()
    for level, items in _levels(endpoint, payload):
        if level not in shapes:
            continue
        expected, known = shapes[level]
        keys: set[str] = set().union(*(item.keys() for item in items)) if items else set()
        for alternatives in expected:
            if items and not all(any(name in item for name in alternatives) for item in items):
                missing.append(f"{level}.{alternatives[0]}")
        allowed = {name for alternatives in expected for name in alternatives} | known
        unexpected |= {f"{level}.{_field_name(key)}" for key in keys - allowed}
    return missing[:MAX_NAMES], sorted(unexpected)[:MAX_NAMES]


def _field_name(key: object) -> str:
    text = str(key)
    return text if _FIELD_NAME.fullmatch(text) else "<odd name>"


def _is_success(endpoint: str, payload: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    if endpoint == "oauth_token":
        return "error" not in payload
    return payload.get("error_code") in (None, 0, "0") and payload.get("code") in (None, 0, "0")


def _levels(endpoint: str, payload: dict[str, Any]) -> Iterator[tuple[str, list[dict]]]:
    if endpoint == "oauth_token":
        yield "token", [payload]
        return
    data = payload.get("data")
    if endpoint == "current_status":
        if isinstance(data, dict):
            yield "data", [data]
            groups = _objects(data.get("monitor_groups"))
            yield "group", groups
            monitors = _objects(data.get("monitors"))
            monitors += [m for g in groups for m in _objects(g.get("monitors"))]
            yield "monitor", monitors
        return
    level = {
        "portals": "portal",
        "short_customers": "customer",
        "monitor_groups_status": "group",
        "msp_monitors_status": "customer",
    }[endpoint]
    items = _objects(_list_of(data))
    yield level, items
    if endpoint == "msp_monitors_status":
        yield "monitor", [m for c in items for m in _objects(c.get("monitors"))]
        yield "group", [g for c in items for g in _objects(c.get("monitor_groups"))]


def _list_of(data: Any) -> Any:
    if isinstance(data, dict):
        for key in ("portals", "customers", "monitor_groups", "groups"):
            if isinstance(data.get(key), list):
                return data[key]
    return data


def _objects(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def statuses_seen(endpoint: str, payload: Any) -> list[str]:
    """The distinct `status` values of groups and monitors, as they arrived ("2" = string)."""
    if endpoint not in ("monitor_groups_status", "current_status", "msp_monitors_status"):
        return []
    if not _is_success(endpoint, payload):
        return []
    seen: set[str] = set()
    for level, items in _levels(endpoint, payload):
        if level == "data":
            continue
        for item in items:
            if "status" in item:
                seen.add(_status_text(item["status"]))
    return sorted(seen, key=lambda text: (len(text), text))[:MAX_STATUSES]


def _status_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and len(value) <= 12:
        return f'"{value}"' if _FIELD_NAME.fullmatch(value) else '"?"'
    return type(value).__name__


# --- what to do about it ----------------------------------------------------------------------


def suggest(report: ProbeReport) -> list[str]:
    """Which switch to flip, or what to fix, for the answers seen."""
    tips: list[str] = []
    rows = {row.flow: row for row in report.rows}
    for generation in ("legacy", "oauth"):
        tips += _status_tips(generation, report)
    tips += _credential_tips(rows)
    tips += _throttle_tips(report.rows)
    tips += _version_tips(report.rows, report.switches)
    tips += _shape_tips(report.rows)
    wide = rows.get("msp_monitors_status")
    if wide is not None and wide.result == OK:
        tips.append(
            "The MSP-wide customer status works (" + (wide.note or "one call") + "): a "
            "candidate refresh source for large MSPs (one call per round instead of one per "
            "customer)."
        )
    return tips


def _status_tips(generation: str, report: ProbeReport) -> list[str]:
    rows = [r for r in report.rows if r.generation == generation and r.source]
    tried = [r for r in rows if r.result != SKIP]
    configured = next((r for r in rows if r.role == NEEDED), None)
    if configured is None or configured.result != FAIL:
        return []
    working = [r for r in tried if r.result == OK]
    names = _SWITCHES[generation]
    if working:
        best = _preferred(configured, working)
        changes = []
        if best.source != configured.source:
            changes.append(f"{names[0]}={best.source}")
        if best.via != configured.via:
            changes.append(f"{names[1]}={best.via}")
        return [
            f"{generation}: the configured {configured.label} failed ({configured.error}) but "
            f"{best.label} works: set {' and '.join(changes)}."
        ]
    if all(r.error == "auth" for r in tried):
        if generation == "legacy":
            return [
                "legacy: every status call refused the customer's portal authtoken: replace the "
                "token, or (if Site24x7 has retired client-portal authtokens for this account) "
                "connect an OAuth identity and read the customers through OAuth."
            ]
        return [
            "oauth: every status call refused the access token: check that the Self Client's "
            "grant code had the scopes Site24x7.Msp.Read and Site24x7.Reports.Read (plus "
            "Site24x7.Admin.Read), then reconnect."
        ]
    passing = [r.label for r in tried if r.error in ("throttled", "transient")]
    if passing:
        return [
            f"{generation}: no status call worked, but {', '.join(passing)} failed only for "
            "now (throttled or a server error): re-run the probe in a few minutes to see "
            "whether it can replace the configured one."
        ]
    return [
        f"{generation}: no status call worked (see the table); attach the --report file to a "
        "support ticket or an issue."
    ]


def _preferred(configured: ProbeRow, working: list[ProbeRow]) -> ProbeRow:
    """Change as little as possible: same source first, then same selector."""

    def distance(row: ProbeRow) -> tuple[int, int]:
        return (row.source != configured.source, row.via != configured.via)

    return min(working, key=distance)


def _credential_tips(rows: Mapping[str, ProbeRow]) -> list[str]:
    tips = []
    portals = rows.get("portals")
    if portals is not None and portals.failed:
        if portals.error == "not-found":
            tips.append(
                "legacy: /api/msp/customers/portals does not exist here: the legacy flow is "
                "not available on this account; connect an OAuth identity instead."
            )
        elif portals.error == "auth":
            tips.append("legacy: the MSP authtoken was refused: replace it, or use OAuth.")
    token = rows.get("oauth_token")
    if token is not None and token.failed:
        if token.error == "mint-limit":
            tips.append(
                "oauth: Zoho refused another mint (10 per refresh token per 10 minutes): "
                "wait 10 minutes before running the probe or the refresh again."
            )
        elif token.error == "auth":
            tips.append(
                "oauth: Zoho refused the client id/secret or refresh token: check the data "
                "centre (a refresh token works only on its own accounts host), or reconnect "
                "with a new grant code."
            )
    return tips


def _throttle_tips(rows: list[ProbeRow]) -> list[str]:
    tips = []
    throttled = [r for r in rows if r.error in ("throttled", "mint-limit") or r.http_status == 429]
    for row in throttled:
        wait = row.rate_limit.get("Retry-After") or next(
            (v for k, v in row.rate_limit.items() if k.lower() == "retry-after"), ""
        )
        after = f", Retry-After {wait} s" if wait else ""
        tips.append(
            f"{row.endpoint} is throttled (HTTP {row.http_status or '-'}{after}): wait and "
            f"re-run; if it happens in normal operation, lower its budget in "
            f"SITE24X7_CALL_BUDGETS (e.g. {row.endpoint}=20)."
        )
    with_headers = [r for r in rows if any(k.lower() != "retry-after" for k in r.rate_limit)]
    if with_headers:
        sample = with_headers[0]
        shown = ", ".join(f"{k}={v}" for k, v in sample.rate_limit.items())
        tips.append(
            f"Site24x7 sends rate-limit headers ({sample.endpoint}: {shown}): keep "
            "SITE24X7_CALL_BUDGETS below the limit they show."
        )
    return tips


def _version_tips(rows: list[ProbeRow], switches: Switches) -> list[str]:
    hit = any(r.failed and (r.http_status == 406 or "version" in r.message.lower()) for r in rows)
    if not hit:
        return []
    other = "2.1" if switches.accept_version != "2.1" else "2.0"
    return [
        f"An answer complains about the API version: try SITE24X7_ACCEPT_VERSION={other} "
        f"(now {switches.accept_version})."
    ]


def _shape_tips(rows: list[ProbeRow]) -> list[str]:
    odd = [r for r in rows if r.result == OK and r.role == NEEDED and r.missing]
    return [
        f"{r.label} answered without {', '.join(r.missing)}: the client copes, but please "
        "attach the --report file to an issue so the parser can be checked."
        for r in odd
    ]


# --- rendering --------------------------------------------------------------------------------

COLUMNS = ("FLOW", "ROLE", "RESULT", "HTTP", "CODE", "RATE-LIMIT", "STATUSES", "SHAPE", "MESSAGE")


def table_rows(report: ProbeReport) -> list[tuple[str, ...]]:
    lines = []
    for row in report.rows:
        result = f"{row.result} {row.error}".strip()
        rate = ", ".join(f"{k}={v}" for k, v in row.rate_limit.items()) or "-"
        message = row.message
        if row.note:
            message = f"{message} [{row.note}]" if message else f"[{row.note}]"
        lines.append(
            (
                row.label,
                row.role,
                result,
                str(row.http_status) if row.http_status is not None else "-",
                row.code or "-",
                rate,
                ",".join(row.statuses) or "-",
                row.shape,
                message or "-",
            )
        )
    return lines


def render_table(report: ProbeReport) -> str:
    """The result table (plain text, fixed-width columns, message last)."""
    lines = table_rows(report)
    if not lines:
        return "(nothing was probed: no credentials)"
    widths = [max(len(col), *(len(line[i]) for line in lines)) for i, col in enumerate(COLUMNS)]
    widths[-1] = 0  # the message column is last: no padding
    out = [_line(COLUMNS, widths), _line(tuple("-" * w for w in widths[:-1]) + ("-" * 7,), widths)]
    out += [_line(line, widths) for line in lines]
    return "\n".join(out)


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
