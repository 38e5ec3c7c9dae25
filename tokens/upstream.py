"""The one place that builds Site24x7 clients from settings (overrides for the simulator)."""

from functools import lru_cache

from django.conf import settings

from msp_dashboard.site24x7 import Site24x7Client


def get_client(data_centre: str = "US") -> Site24x7Client:
    """A shared client per data centre; it keeps one requests session per thread."""
    return _client(
        data_centre,
        settings.SITE24X7_API_URL or None,
        settings.SITE24X7_ACCOUNTS_URL or None,
        (settings.SITE24X7_CONNECT_TIMEOUT, settings.SITE24X7_READ_TIMEOUT),
    )


@lru_cache(maxsize=32)
def _client(data_centre, api_url, accounts_url, timeout) -> Site24x7Client:
    return Site24x7Client(data_centre, api_url=api_url, accounts_url=accounts_url, timeout=timeout)
