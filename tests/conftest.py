"""Shared fixtures: the simulator over real HTTP on loopback, and service gates.

With REQUIRE_SERVICES=1 (CI) a test that needs PostgreSQL, Redis or Chromium fails when the
service is missing; elsewhere it is skipped, so `make test` passes on a bare machine too."""

import contextlib
import os
import shutil

import pytest

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


def need(condition: bool, what: str) -> None:
    """Skip (or fail in CI) when a real service the test needs is not there."""
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


@pytest.fixture(scope="session")
def simulator_server():
    from site24x7_simulator import Simulator

    sim = Simulator(customers=8, seed=7, port=0).start()
    yield sim
    sim.stop()


@pytest.fixture
def simulator(simulator_server, settings):
    """A simulator in its seed state, with the client settings pointing at it."""
    import requests

    requests.post(f"{simulator_server.url}/_sim/reset", timeout=5).raise_for_status()
    settings.SITE24X7_API_URL = simulator_server.url
    settings.SITE24X7_ACCOUNTS_URL = simulator_server.url
    return simulator_server


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, headless, with the flags this machine and CI
    need (`playwright install` cannot download browsers here); one per test module.
    Screenshots go to var/screenshots/."""
    need(os.path.exists(CHROMIUM), "Chromium")
    from django.conf import settings
    from playwright.sync_api import sync_playwright

    (settings.VAR_DIR / "screenshots").mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def chromium_path():
    need(shutil.which(CHROMIUM) is not None or os.path.exists(CHROMIUM), "Chromium")
    return CHROMIUM


@pytest.fixture
def redis_url():
    url = os.environ.get("REDIS_URL", "")
    need(bool(url), "Redis (REDIS_URL)")
    return url


@pytest.fixture
def cache_down(settings):
    """The default cache (production's backend) pointed at a Redis that is not there (REL-10)."""
    from django.core.cache import caches

    settings.CACHES = {
        "default": {
            "BACKEND": "msp_dashboard.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    caches.close_all()


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    # A cache that is down (a resilience test stops Redis) must not break unrelated tests.
    with contextlib.suppress(Exception):
        cache.clear()
    yield
