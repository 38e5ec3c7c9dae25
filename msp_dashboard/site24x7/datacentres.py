"""Site24x7 data centres: API, Zoho accounts and console hosts (api-reference.md §5.4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DataCentre:
    """Hosts of one Site24x7 data centre. URLs carry no trailing slash and no path."""

    code: str
    api_url: str
    accounts_url: str
    portal_accounts_url: str | None
    web_url: str
    api_console_url: str


def _dc(code: str, site: str, accounts: str, console: str, portal: str | None = None) -> DataCentre:
    return DataCentre(
        code=code,
        api_url=site,
        accounts_url=accounts,
        portal_accounts_url=portal,
        web_url=site,
        api_console_url=console,
    )


# The legacy client-portal accounts host is only known for US; elsewhere it is [?] (None).
DATA_CENTRES: dict[str, DataCentre] = {
    dc.code: dc
    for dc in (
        _dc(
            "US",
            "https://www.site24x7.com",
            "https://accounts.zoho.com",
            "https://api-console.zoho.com",
            portal="https://accounts.zohoportal.com",
        ),
        _dc(
            "EU",
            "https://www.site24x7.eu",
            "https://accounts.zoho.eu",
            "https://api-console.zoho.eu",
        ),
        _dc(
            "IN",
            "https://www.site24x7.in",
            "https://accounts.zoho.in",
            "https://api-console.zoho.in",
        ),
        _dc(
            "AU",
            "https://www.site24x7.net.au",
            "https://accounts.zoho.com.au",
            "https://api-console.zoho.com.au",
        ),
        _dc(
            "CN",
            "https://www.site24x7.cn",
            "https://accounts.zoho.com.cn",
            "https://api-console.zoho.com.cn",
        ),
        # JP: the official API intro uses app.site24x7.jp (Terraform has www.); prefer app.
        _dc(
            "JP",
            "https://app.site24x7.jp",
            "https://accounts.zoho.jp",
            "https://api-console.zoho.jp",
        ),
        _dc(
            "CA",
            "https://www.site24x7.ca",
            "https://accounts.zohocloud.ca",
            "https://api-console.zohocloud.ca",
        ),
        # UK, AE, SA: third-party zone table; consoles follow the accounts host [I].
        _dc(
            "UK",
            "https://app.site24x7.uk",
            "https://accounts.zoho.uk",
            "https://api-console.zoho.uk",
        ),
        _dc(
            "AE",
            "https://app.site24x7.ae",
            "https://accounts.zoho.ae",
            "https://api-console.zoho.ae",
        ),
        _dc(
            "SA",
            "https://www.site24x7.sa",
            "https://accounts.zoho.sa",
            "https://api-console.zoho.sa",
        ),
    )
}


def get_data_centre(code: str) -> DataCentre:
    """The data centre for `code` (case-insensitive, e.g. "eu"); ValueError when unknown."""
    dc = DATA_CENTRES.get(code.strip().upper()) if isinstance(code, str) else None
    if dc is None:
        known = ", ".join(DATA_CENTRES)
        raise ValueError(f"unknown Site24x7 data centre {code!r} (known: {known})")
    return dc
