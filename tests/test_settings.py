"""Settings and configuration invariants that hold in every environment."""

import pytest
from django.conf import settings
from django.core.checks import run_checks

from tokens import checks as token_checks


def test_celery_invariants():
    assert settings.CELERY_TASK_SERIALIZER == "json"
    assert settings.CELERY_RESULT_SERIALIZER == "json"
    assert settings.CELERY_ACCEPT_CONTENT == ["json"]
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP is True
    assert settings.CELERY_TASK_TIME_LIMIT > settings.CELERY_TASK_SOFT_TIME_LIMIT > 0


def test_visibility_timeout_covers_limit_backoff_and_interval():
    vt = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
    if settings.REDIS_URL:
        needed = (
            settings.CELERY_TASK_TIME_LIMIT
            + settings.REFRESH_BACKOFF_MAX
            + settings.REFRESH_INTERVAL
        )
        assert vt > needed
    else:
        assert settings.CELERY_BROKER_URL == "filesystem://"


def test_beat_schedule_expires_within_interval():
    entry = settings.CELERY_BEAT_SCHEDULE["refresh-due"]
    assert entry["schedule"] == settings.REFRESH_INTERVAL
    assert entry["options"]["expires"] <= settings.REFRESH_INTERVAL


def test_urllib3_logging_pinned_to_warning():
    assert settings.LOGGING["loggers"]["urllib3"]["level"] == "WARNING"


@pytest.mark.parametrize(
    ("keys", "code"),
    [([], "tokens.E001"), (["not-a-fernet-key"], "tokens.E002")],
)
def test_bad_encryption_keys_stop_startup(settings, keys, code):
    settings.FIELD_ENCRYPTION_KEYS = keys
    errors = [e.id for e in token_checks.check_field_encryption_keys(None)]
    assert errors == [code]


def test_encryption_key_equal_to_secret_key_is_refused(settings):
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    settings.SECRET_KEY = key
    settings.FIELD_ENCRYPTION_KEYS = [key]
    errors = [e.id for e in token_checks.check_field_encryption_keys(None)]
    assert errors == ["tokens.E003"]


def test_configured_project_passes_checks():
    errors = [m for m in run_checks() if m.is_serious()]
    assert errors == []
