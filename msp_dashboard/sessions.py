"""Sessions in the database, read through the cache (SESSION_ENGINE), that keep working while
the cache (Redis) is down (REL-10).

Django's cached_db saves every session to the database and caches it, so most requests read
no session row (the wall screen polls every few seconds: PERF-01). Its `load` and `delete`
raise when the cache is unreachable; here a read falls back to the database, and a session
deleted (logout, expiry) while the cache is down is gone from the database at once. Its
cached copy, if any, cannot be removed then: cache entries live at most SESSION_CACHE_SECONDS,
so such a copy outlives the logout by at most that (and the idle timeout still applies)."""

import contextlib
import logging

from django.contrib.sessions.backends import cached_db

logger = logging.getLogger("msp_dashboard.sessions")

SESSION_CACHE_SECONDS = 300


class SessionStore(cached_db.SessionStore):
    def _cache_timeout(self, expiry=None) -> int:
        return max(1, min(SESSION_CACHE_SECONDS, self.get_expiry_age(expiry=expiry)))

    def load(self):
        try:
            data = self._cache.get(self.cache_key)
        except Exception:  # unreachable, or a key it refuses: the database has the session
            data = None
        if data is not None:
            return data
        row = self._get_session_from_db()
        if not row:
            return {}
        data = self.decode(row.session_data)
        self._cache_put(data, self._cache_timeout(row.expire_date))
        return data

    def exists(self, session_key):
        with contextlib.suppress(Exception):  # the cache is down: the database decides
            if session_key and (self.cache_key_prefix + session_key) in self._cache:
                return True
        return super(cached_db.SessionStore, self).exists(session_key)

    def save(self, must_create=False):
        super(cached_db.SessionStore, self).save(must_create)  # the database row
        self._cache_put(self._session, self._cache_timeout())

    def delete(self, session_key=None):
        super(cached_db.SessionStore, self).delete(session_key)  # the database row
        key = session_key or self.session_key
        if key is None:
            return
        try:
            self._cache.delete(self.cache_key_prefix + key)
        except Exception as exc:
            logger.warning(
                "session deleted from the database; the cache is unreachable (%s), its cached "
                "copy expires within %d s", type(exc).__name__, SESSION_CACHE_SECONDS,
            )  # fmt: skip

    def _cache_put(self, data, timeout: int) -> None:
        try:
            self._cache.set(self.cache_key, data, timeout)
        except Exception as exc:
            logger.warning("session not cached: the cache is unreachable (%s)", type(exc).__name__)
