"""Production settings (SEC-01, SEC-15): the deploy check passes with production-like values,
the values that matter are pinned, and PRODUCTION=1 refuses a laptop-grade configuration.
Each case is a fresh Python process with exactly that environment."""

from __future__ import annotations

import json
import os
import runpy
import secrets
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ROOT = settings.BASE_DIR
PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "DEBUG": s.DEBUG, "ALLOWED_HOSTS": s.ALLOWED_HOSTS, "HSTS": s.SECURE_HSTS_SECONDS,
    "HSTS_SUB": s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "SSL_REDIRECT": s.SECURE_SSL_REDIRECT,
    "SESSION_COOKIE_SECURE": s.SESSION_COOKIE_SECURE, "CSRF_COOKIE_SECURE": s.CSRF_COOKIE_SECURE,
    "SESSION_COOKIE_HTTPONLY": s.SESSION_COOKIE_HTTPONLY, "XFO": s.X_FRAME_OPTIONS,
    "SILENCED": s.SILENCED_SYSTEM_CHECKS, "BROKER": s.CELERY_BROKER_URL,
    "SESSION_AGE": s.SESSION_COOKIE_AGE, "ABSOLUTE": s.SESSION_ABSOLUTE_TIMEOUT,
    "IDLE": s.SESSION_IDLE_TIMEOUT, "PROXY_SSL": list(s.SECURE_PROXY_SSL_HEADER or []),
    "URLLIB3": s.LOGGING["loggers"]["urllib3"]["level"], "AXES_LIMIT": s.AXES_FAILURE_LIMIT,
    "AXES_COOLOFF": s.AXES_COOLOFF_TIME.total_seconds(), "AXES_PARAMS": s.AXES_LOCKOUT_PARAMETERS,
    "BACKENDS": s.AUTHENTICATION_BACKENDS, "MIDDLEWARE": s.MIDDLEWARE,
}))
"""


def production_env(tmp_path, **overrides) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "msp_dashboard.settings",
        "PRODUCTION": "1",
        "DEBUG": "0",
        "DEMO": "0",
        "HTTPS": "1",
        "BEHIND_PROXY": "1",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "noc.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://noc.example.com",
        "DATABASE_URL": "postgres://msp:db-pass@10.0.0.5:5432/msp",
        "REDIS_URL": "redis://:redis-pass@10.0.0.6:6379/0",
        "VAR_DIR": str(tmp_path),
    }
    env.update(overrides)
    return {key: value for key, value in env.items() if value is not None}


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_deploy_check_passes_with_production_values(tmp_path):
    result = run(
        production_env(tmp_path), "manage.py", "check", "--deploy", "--fail-level", "WARNING"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (1 silenced)" in result.stdout  # security.W021 (HSTS preload), justified


def test_deploy_check_fails_on_a_debug_configuration(tmp_path):
    env = production_env(tmp_path, PRODUCTION=None, HTTPS="0", SECURE_SSL_REDIRECT="0")
    result = run(env, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W004" in result.stderr + result.stdout  # no HSTS without HTTPS


def test_production_values_are_pinned(tmp_path):
    result = run(production_env(tmp_path), "-c", PRINT_SETTINGS)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is False
    assert "*" not in values["ALLOWED_HOSTS"]
    assert values["HSTS"] >= 31536000
    assert values["HSTS_SUB"] is True
    assert values["SSL_REDIRECT"] is True
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["XFO"] == "DENY"
    assert values["SILENCED"] == ["security.W021"]
    assert values["PROXY_SSL"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["URLLIB3"] == "WARNING"
    assert values["ABSOLUTE"] <= 12 * 3600 and values["SESSION_AGE"] <= 12 * 3600
    assert 30 * 60 <= values["IDLE"] <= 60 * 60
    assert values["AXES_LIMIT"] == 10 and values["AXES_COOLOFF"] == 15 * 60
    assert values["AXES_PARAMS"] == [["username", "ip_address"]]
    assert values["BACKENDS"][0] == "axes.backends.AxesStandaloneBackend"
    assert values["MIDDLEWARE"][-1] == "axes.middleware.AxesMiddleware"
    # SEC-15: the broker URL carries credentials and names a private host.
    assert values["BROKER"].startswith("redis://:redis-pass@10.")


def test_an_absolute_lifetime_above_12_hours_is_capped(tmp_path):
    env = production_env(tmp_path, SESSION_ABSOLUTE_TIMEOUT=str(48 * 3600))
    values = json.loads(run(env, "-c", PRINT_SETTINGS).stdout.strip().splitlines()[-1])
    assert values["ABSOLUTE"] == 12 * 3600


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"REDIS_URL": "redis://10.0.0.6:6379/0"}, "REDIS_URL needs a password"),
        ({"REDIS_URL": "redis://:pw@8.8.8.8:6379/0"}, "private address"),
        ({"REDIS_URL": None}, "REDIS_URL is required"),
        ({"DATABASE_URL": None}, "DATABASE_URL (PostgreSQL) is required"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be set"),
        ({"HTTPS": "0"}, "HTTPS=1 is required"),
        ({"DEBUG": "1"}, "DEBUG and DEMO must be off"),
        ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS must name the host"),
    ],
)
def test_production_mode_refuses_each_unfit_value(tmp_path, monkeypatch, overrides, message):
    """The settings file itself, executed with that environment (in this process: fast)."""
    env = production_env(tmp_path, **overrides)
    for key in list(os.environ):
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    snapshot = dict(os.environ)
    try:
        with pytest.raises(ImproperlyConfigured) as info:
            runpy.run_path(str(ROOT / "msp_dashboard" / "settings.py"))
    finally:  # a local .env may have added variables: leave the environment as it was
        os.environ.clear()
        os.environ.update(snapshot)
    assert message in str(info.value)
    for secret in ("redis-pass", "db-pass", "pw@"):
        assert secret not in str(info.value)  # the refusal names the problem, not the value


def test_a_refused_production_process_does_not_start(tmp_path):
    env = production_env(tmp_path, REDIS_URL="redis://10.0.0.6:6379/0")
    result = run(env, "manage.py", "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured: PRODUCTION=1: REDIS_URL needs a password" in result.stderr


def test_the_demo_and_the_tests_are_not_production():
    assert settings.PRODUCTION is False
    assert settings.DEBUG is False
