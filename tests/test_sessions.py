"""Sessions read through the cache (msp_dashboard.sessions): no session query per page, and
still working when the cache is down (REL-10)."""

import logging

import pytest
from django.contrib.sessions.models import Session

from msp_dashboard.sessions import SESSION_CACHE_SECONDS, SessionStore

pytestmark = pytest.mark.django_db


def _saved(data: dict) -> SessionStore:
    store = SessionStore()
    store.update(data)
    store.save()
    return store


def test_a_session_is_cached_for_a_few_minutes_and_read_from_the_cache(
    settings, tmp_path, django_assert_num_queries
):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path),
        }
    }
    store = _saved({"who": "noc"})
    assert Session.objects.filter(session_key=store.session_key).exists()
    with django_assert_num_queries(0):
        assert SessionStore(store.session_key).load() == {"who": "noc"}
    assert store._cache_timeout() == SESSION_CACHE_SECONDS  # not the 12-hour session age


def test_with_the_cache_down_sessions_are_read_saved_and_deleted_in_the_database(
    cache_down, caplog
):
    with caplog.at_level(logging.WARNING, logger="msp_dashboard.sessions"):
        store = _saved({"who": "noc"})  # saved, not cached
        assert SessionStore(store.session_key).load() == {"who": "noc"}
        SessionStore(store.session_key).delete()  # logout
    assert not Session.objects.filter(session_key=store.session_key).exists()
    assert SessionStore(store.session_key).load() == {}
    messages = [r.getMessage() for r in caplog.records]
    assert any("its cached copy expires within 300 s" in m for m in messages)
    assert not any(store.session_key in m for m in messages)  # no session key in the log
