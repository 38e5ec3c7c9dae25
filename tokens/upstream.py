"""The one place that builds Site24x7 clients from settings (overrides for the simulator) and
reads the Site24x7 switches of issue 10 (docs/connecting-a-real-account.md).

Refresh code asks `status_call_for(customer.auth_generation)` which status source and customer
selector to use, and `call_budget_for(endpoint)` how many calls a window allows."""

import re
from functools import lru_cache
from typing import NamedTuple

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from msp_dashboard.site24x7 import (
    SELECTOR_VIAS,
    STATUS_SOURCES,
    Auth,
    GroupStatus,
    Site24x7Client,
)

GENERATIONS = ("legacy", "oauth")  # portals.models.AuthGeneration values
ENDPOINT_KEYS = (
    "portals",
    "authtoken_create",
    "authtoken_delete",
    "monitor_groups_status",
    "oauth_token",
    "oauth_revoke",
    "short_customers",
    "current_status",
    "msp_monitors_status",
)
REFRESH_SOURCES = ("per_customer", "msp_wide")
_VERSION = re.compile(r"\d{1,3}(\.\d{1,3}){0,2}")


def get_client(data_centre: str = "US") -> Site24x7Client:
    """A shared client per data centre; it keeps one requests session per thread."""
    return _client(
        data_centre,
        settings.SITE24X7_API_URL or None,
        settings.SITE24X7_ACCOUNTS_URL or None,
        (settings.SITE24X7_CONNECT_TIMEOUT, settings.SITE24X7_READ_TIMEOUT),
        settings.SITE24X7_ACCEPT_VERSION,
    )


@lru_cache(maxsize=32)
def _client(data_centre, api_url, accounts_url, timeout, accept_version) -> Site24x7Client:
    return Site24x7Client(
        data_centre,
        api_url=api_url,
        accounts_url=accounts_url,
        timeout=timeout,
        accept_version=accept_version,
    )


# --- the switches --------------------------------------------------------------------------


class StatusCall(NamedTuple):
    """Which status source and customer selector a refresh uses: unpacks as `(source, via)`.

    `source` is also the endpoint key of the call budget and of the simulator's counters."""

    source: str  # "monitor_groups_status" | "current_status"
    via: str  # "param" | "cookie"

    def fetch(self, client: Site24x7Client, *, customer, token: str) -> list[GroupStatus]:
        """The customer's monitor groups: `token` is its portal authtoken (legacy customer) or
        the MSP identity's access token (OAuth customer); zaid or zaaid follows suit."""
        legacy = customer.auth_generation == "legacy"
        return client.customer_status(
            source=self.source,
            auth=Auth.legacy(token) if legacy else Auth.oauth(token),
            customer_ref=customer.zaid if legacy else customer.zaaid,
            via=self.via,
        )


def status_call_for(customer_auth_generation: str) -> StatusCall:
    """(source, via) for a customer of this auth generation, from the settings:
    legacy → SITE24X7_LEGACY_STATUS_SOURCE and SITE24X7_ZAID_VIA;
    oauth → SITE24X7_OAUTH_STATUS_SOURCE and SITE24X7_ZAAID_VIA."""
    if customer_auth_generation not in GENERATIONS:
        raise ValueError(f"auth generation must be one of {', '.join(GENERATIONS)}")
    errors = switch_errors()
    if errors:
        raise ImproperlyConfigured("; ".join(errors))
    if customer_auth_generation == "legacy":
        return StatusCall(settings.SITE24X7_LEGACY_STATUS_SOURCE, settings.SITE24X7_ZAID_VIA)
    return StatusCall(settings.SITE24X7_OAUTH_STATUS_SOURCE, settings.SITE24X7_ZAAID_VIA)


def msp_wide_refresh() -> bool:
    """True when a round reads OAuth customers with one MSP-wide call per identity
    (SITE24X7_OAUTH_REFRESH_SOURCE=msp_wide, portals.wide)."""
    return settings.SITE24X7_OAUTH_REFRESH_SOURCE == "msp_wide"


def call_budget_for(endpoint: str) -> int:
    """Calls allowed per window for this endpoint: SITE24X7_CALL_BUDGETS[endpoint], else
    SITE24X7_CALL_BUDGET."""
    budgets = _budgets()
    return budgets.get(endpoint, int(settings.SITE24X7_CALL_BUDGET))


def _budgets() -> dict[str, int]:
    raw = getattr(settings, "SITE24X7_CALL_BUDGETS", None) or {}
    if isinstance(raw, str):
        raw = dict(part.split("=", 1) for part in raw.split(",") if "=" in part)
    try:
        return {str(key).strip(): int(str(value).strip()) for key, value in raw.items()}
    except ValueError:
        raise ImproperlyConfigured(
            "SITE24X7_CALL_BUDGETS must look like current_status=40,monitor_groups_status=40"
        ) from None


def switch_values() -> dict[str, object]:
    """The switches as configured (for the probe's header and report; no secrets here)."""
    return {
        "SITE24X7_LEGACY_STATUS_SOURCE": settings.SITE24X7_LEGACY_STATUS_SOURCE,
        "SITE24X7_OAUTH_STATUS_SOURCE": settings.SITE24X7_OAUTH_STATUS_SOURCE,
        "SITE24X7_OAUTH_REFRESH_SOURCE": settings.SITE24X7_OAUTH_REFRESH_SOURCE,
        "SITE24X7_ZAID_VIA": settings.SITE24X7_ZAID_VIA,
        "SITE24X7_ZAAID_VIA": settings.SITE24X7_ZAAID_VIA,
        "SITE24X7_ACCEPT_VERSION": settings.SITE24X7_ACCEPT_VERSION,
        "SITE24X7_CALL_BUDGETS": dict(getattr(settings, "SITE24X7_CALL_BUDGETS", None) or {}),
        "SITE24X7_CALL_BUDGET": settings.SITE24X7_CALL_BUDGET,
    }


def switch_errors() -> list[str]:
    """Human messages for every switch that holds a value the code does not know."""
    choices = {
        "SITE24X7_LEGACY_STATUS_SOURCE": STATUS_SOURCES,
        "SITE24X7_OAUTH_STATUS_SOURCE": STATUS_SOURCES,
        "SITE24X7_OAUTH_REFRESH_SOURCE": REFRESH_SOURCES,
        "SITE24X7_ZAID_VIA": SELECTOR_VIAS,
        "SITE24X7_ZAAID_VIA": SELECTOR_VIAS,
    }
    errors = [
        f"{name} must be one of {', '.join(allowed)} (not {getattr(settings, name)!r})"
        for name, allowed in choices.items()
        if getattr(settings, name) not in allowed
    ]
    if not _VERSION.fullmatch(str(settings.SITE24X7_ACCEPT_VERSION)):
        errors.append("SITE24X7_ACCEPT_VERSION must be a version number such as 2.0 or 2.1")
    try:
        budgets = _budgets()
    except ImproperlyConfigured as exc:
        errors.append(str(exc))
    else:
        if any(value < 1 for value in budgets.values()):
            errors.append("SITE24X7_CALL_BUDGETS values must be at least 1")
    return errors


@checks.register()
def check_site24x7_switches(app_configs, **kwargs):
    """Refuse to start with a switch value no code path knows (a typo would fail every call)."""
    hint = "See docs/connecting-a-real-account.md and .env.example."
    found = [checks.Error(message, hint=hint, id="tokens.E010") for message in switch_errors()]
    try:
        unknown = sorted(set(_budgets()) - set(ENDPOINT_KEYS))
    except ImproperlyConfigured:
        unknown = []
    if unknown:
        message = f"SITE24X7_CALL_BUDGETS names unknown endpoints: {', '.join(unknown)}"
        known = f"Known: {', '.join(ENDPOINT_KEYS)}"
        found.append(checks.Warning(message, hint=known, id="tokens.W010"))
    return found
