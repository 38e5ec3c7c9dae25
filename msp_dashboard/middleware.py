"""Small security middlewares (issue 6).

- RealIPMiddleware: behind the reverse proxy of deploy/nginx.conf (BEHIND_PROXY=1), the peer
  address is the proxy's; nginx sets `X-Real-IP: $remote_addr` (overwriting what a client
  sent) and gunicorn listens on loopback only, so that header is the client's address. Login
  throttling, the audit trail and logs all read REMOTE_ADDR.
- SessionTimeoutMiddleware: an idle timeout (SESSION_IDLE_TIMEOUT) and an absolute lifetime
  (SESSION_ABSOLUTE_TIMEOUT, at most 12 h) on top of Django's session. Any request of the
  session counts as activity, including the grid's poll, which runs only while the page is
  visible: a wall screen that shows the grid stays logged in until the absolute lifetime ends
  (then the poll sends it to the login form, which returns to the same view); a tab left in
  the background stops polling and times out. Expired: the session is flushed and the request
  goes on as anonymous, so the usual login redirect (or htmx's HX-Redirect) answers.
- ActorMiddleware: names the logged-in user and IP for audit receivers (role changes,
  credential deletions) that run inside the request.
- PrivateCacheMiddleware: `Cache-Control: no-store` on whatever a logged-in user gets.
- CSP: django-csp's middleware, configured in settings (one policy; the admin needs no extra
  source, see tests/test_security_browser.py)."""

from __future__ import annotations

import contextlib
import ipaddress
import time

from django.conf import settings
from django.contrib.auth import logout
from django.utils.cache import add_never_cache_headers


class RealIPMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.enabled = bool(getattr(settings, "BEHIND_PROXY", False))
        self.header = getattr(settings, "REAL_IP_HEADER", "HTTP_X_REAL_IP")

    def __call__(self, request):
        if self.enabled:
            value = request.META.get(self.header, "").strip()
            with contextlib.suppress(ValueError):  # not an address: keep the peer's
                request.META["REMOTE_ADDR"] = str(ipaddress.ip_address(value))
        return self.get_response(request)


class SessionTimeoutMiddleware:
    """After AuthenticationMiddleware. Session keys: `auth_at` (set at login by
    portals.accounts) and `seen_at` (refreshed at most once a minute, to spare writes)."""

    TOUCH_EVERY = 60

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            self._enforce(request)
        return self.get_response(request)

    def _enforce(self, request) -> None:
        session = request.session
        now = time.time()
        idle = float(getattr(settings, "SESSION_IDLE_TIMEOUT", 3600))
        absolute = float(getattr(settings, "SESSION_ABSOLUTE_TIMEOUT", 12 * 3600))
        auth_at = float(session.get("auth_at") or now)
        seen_at = float(session.get("seen_at") or auth_at)
        if now - auth_at > absolute or now - seen_at > idle:
            logout(request)
            return
        if "auth_at" not in session:
            session["auth_at"] = auth_at
        if now - seen_at >= self.TOUCH_EVERY or "seen_at" not in session:
            session["seen_at"] = now


class ActorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from tokens.signals import acting

        with acting(request.user, request.META.get("REMOTE_ADDR") or None):
            return self.get_response(request)


class PrivateCacheMiddleware:
    """Nothing a logged-in user is shown is stored by a browser or proxy cache (SEC-02:
    customer data and credential forms; the views say so too, this covers the rest, e.g. the
    admin's password form). Responses that set their own Cache-Control keep it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Cache-Control" not in response and request.user.is_authenticated:
            add_never_cache_headers(response)
        return response
