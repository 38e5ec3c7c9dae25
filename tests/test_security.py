"""Security hardening (issue 6): CSRF and safe methods (SEC-03), headers (SEC-02), sessions
(SEC-05) and login throttling (SEC-06). Every URL of the resolver is walked; the upstream is the
simulator and its counters prove that no GET reaches it."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
import requests
import time_machine
from celery.app.task import Task
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import Client
from django.utils import timezone

from tests.roles_support import PASSWORD, VIEWER, make_user
from tests.test_security_support import all_urls, is_login_redirect
from tokens.models import AuditEvent

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.test_security_support"]


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    """Passwords hashed in microseconds: the login tests are about throttling, not PBKDF2."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


HTMX = {"HTTP_HX_REQUEST": "true"}
CSRF_TOKEN = re.compile(rb'(name="csrfmiddlewaretoken" value=|"X-CSRFToken": )"[^"]+"')


@pytest.fixture
def root(db):
    return get_user_model().objects.create_superuser("root", password=PASSWORD)


def _strict(user=None) -> Client:
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def _token(client) -> str:
    client.get("/login/")  # the login page sets the CSRF cookie
    return client.cookies["csrftoken"].value


# --- SEC-03: CSRF on every state change ---------------------------------------------------------


def test_every_post_without_a_csrf_token_is_refused(world, root, simulator):
    client = _strict(root)
    counters = _sim_requests(simulator)
    for url in all_urls(world):
        response = client.post(url.path, {"x": "1"})
        assert response.status_code == 403, url
        assert b"CSRF" in response.content, url
    assert _sim_requests(simulator) == counters
    assert client.get("/").status_code == 200  # still logged in: the logouts were refused too


def test_login_and_logout_need_the_csrf_token(root):
    client = _strict()
    assert client.post("/login/", {"username": "root", "password": PASSWORD}).status_code == 403
    token = _token(client)
    data = {"username": "root", "password": PASSWORD, "csrfmiddlewaretoken": token}
    assert client.post("/login/", data).status_code == 302
    assert client.post("/logout/").status_code == 403
    assert client.get("/").status_code == 200
    token = client.cookies["csrftoken"].value
    assert client.post("/logout/", {"csrfmiddlewaretoken": token}).status_code == 302
    assert is_login_redirect(client.get("/"))


def test_state_changes_succeed_with_the_token(world, root, simulator):
    client = _strict(root)
    token = _token(client)
    customer, credential = world.customer, world.credential
    posts = [
        (f"/customers/{customer.pk}/refresh/", {}),
        ("/customers/sync/", {}),
        (f"/customers/{customer.pk}/credentials/import", {"token": "x" * 40, "label": "ok"}),
        (f"/customers/{customer.pk}/credentials/new", {"email": "a@b.example", "password": "p"}),
        (f"/credentials/{credential.pk}/test", {}),
        (f"/credentials/{credential.pk}/revoke", {}),
        (
            "/admin/tokens/credential/",
            {"action": "test_selected", "_selected_action": [credential.pk]},
        ),
        ("/admin/portals/customergroup/add/", {"name": "Via admin"}),
    ]
    for path, data in posts:
        response = client.post(path, {**data, "csrfmiddlewaretoken": token})
        assert response.status_code in (200, 302), (path, response.status_code)
    assert world.customer.customer_groups.model.objects.filter(name="Via admin").exists()
    assert AuditEvent.objects.filter(action="credential.import").exists()


# --- SEC-03: GET never changes anything ---------------------------------------------------------


def _row_counts() -> dict[str, int]:
    """Rows per table; the audit trail counts without its access denials (a GET the admin
    refuses, like the add form of a read-only model, is a denial and is audited: SEC-04)."""
    counts = {m._meta.label: m._default_manager.count() for m in apps.get_models()}
    counts["tokens.AuditEvent"] = AuditEvent.objects.exclude(action="access.denied").count()
    return counts


def _sim_requests(sim) -> dict:
    return requests.get(f"{sim.url}/_sim/counters", timeout=5).json()["requests"]


def test_get_of_every_url_changes_no_row_enqueues_no_task_and_calls_no_upstream(
    world, root, simulator, monkeypatch, django_capture_on_commit_callbacks
):
    client = Client()
    client.force_login(root)
    client.get("/")  # the session's first request may store its activity time
    enqueued = []
    monkeypatch.setattr(Task, "apply_async", lambda self, *a, **k: enqueued.append(self.name))
    counts, upstream = _row_counts(), _sim_requests(simulator)
    statuses = {}
    with django_capture_on_commit_callbacks() as callbacks:
        for url in all_urls(world):
            for headers in ({}, HTMX):
                statuses[url.name] = client.get(url.path, **headers).status_code
    assert _row_counts() == counts
    assert enqueued == []
    assert callbacks == []
    assert _sim_requests(simulator) == upstream
    assert statuses["admin:index"] == statuses["portals:grid"] == 200
    assert sum(1 for s in statuses.values() if s == 200) > 40


# --- SEC-02: headers ------------------------------------------------------------------------------

NO_STORE = (
    "portals:grid",
    "portals:grid-rows",
    "portals:grid-json",
    "portals:customer",
    "tokens:",
    "admin:",
    "login",
)


def test_every_html_page_carries_the_security_headers(world, root, settings):
    client = Client()
    client.force_login(root)
    checked = 0
    for url in all_urls(world):
        for headers in ({}, HTMX):
            response = client.get(url.path, **headers)
            if response.status_code != 200:
                continue
            checked += 1
            _assert_headers(response, url)
    assert checked > 60
    settings.SECURE_HSTS_SECONDS = 31536000  # what HTTPS=1 sets; read when a handler starts
    fresh = Client()
    fresh.force_login(root)
    secure = fresh.get("/", secure=True)
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")


def _assert_headers(response, url) -> None:
    kind = response.get("Content-Type", "")
    if kind.startswith("text/html"):
        csp = response["Content-Security-Policy"]
        for directive in (
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "img-src 'self' data:",
            "script-src 'self'",
            "style-src 'self'",
        ):
            assert directive in csp, (url, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff", url
    assert response["Referrer-Policy"] == "same-origin", url
    assert response["Cross-Origin-Opener-Policy"] == "same-origin", url
    if url.name.startswith(NO_STORE) or url.name in NO_STORE:
        assert "no-store" in response.get("Cache-Control", ""), url


def test_the_login_page_and_error_pages_have_the_policy_too(client):
    for path in ("/login/", "/no-such-page/"):
        response = client.get(path)
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"], path


def test_no_template_has_an_inline_script_style_or_handler():
    from pathlib import Path

    from django.conf import settings

    roots = [settings.BASE_DIR / "templates", *settings.BASE_DIR.glob("*/templates")]
    offenders = []
    for root in roots:
        for path in Path(root).rglob("*.html"):
            text = path.read_text()
            if re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text) or re.search(r"<style", text):
                offenders.append(str(path))
            if re.search(r"\son[a-z]+=\"", text) or re.search(r'\sstyle="', text):
                offenders.append(str(path))
    assert offenders == []


# --- SEC-05: sessions -----------------------------------------------------------------------------


def _login(client, username="viewer", password=PASSWORD, **extra):
    return client.post("/login/", {"username": username, "password": password}, **extra)


def test_the_session_id_changes_at_login_and_a_copied_cookie_dies_at_logout(db):
    make_user("viewer", VIEWER)
    client = Client()
    session = client.session
    session["before-login"] = True
    session.save()
    client.cookies["sessionid"] = session.session_key
    before = session.session_key
    assert _login(client).status_code == 302
    after = client.cookies["sessionid"].value
    assert after != before
    thief = Client()
    thief.cookies["sessionid"] = after
    assert thief.get("/").status_code == 200
    client.post("/logout/")
    assert is_login_redirect(thief.get("/"))
    assert is_login_redirect(thief.get("/grid.json"))


def test_idle_timeout_logs_out_but_a_polling_wall_screen_stays(db, settings):
    make_user("viewer", VIEWER)
    settings.SESSION_IDLE_TIMEOUT = 30 * 60
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        idle, wall = Client(), Client()
        _login(idle)
        _login(wall)
        for _ in range(12):  # two hours of polling every ten minutes
            clock.shift(timedelta(minutes=10))
            assert wall.get("/grid/rows/", **HTMX).status_code == 200
        assert idle.get("/").status_code == 302
        response = idle.get("/grid/rows/", **HTMX)  # an htmx poll after expiry: whole page
        assert response.status_code in (204, 302)
    logouts = AuditEvent.objects.filter(action="logout", actor_name="viewer")
    assert logouts.count() == 1


def test_idle_timeout_boundary(db, settings):
    make_user("viewer", VIEWER)
    settings.SESSION_IDLE_TIMEOUT = 30 * 60
    with time_machine.travel(timezone.now(), tick=False) as clock:
        client = Client()
        _login(client)
        clock.shift(timedelta(minutes=29))
        assert client.get("/").status_code == 200
        clock.shift(timedelta(minutes=29))
        assert client.get("/").status_code == 200
        clock.shift(timedelta(minutes=31))
        assert is_login_redirect(client.get("/"))


def test_absolute_lifetime_ends_even_a_busy_session(db, settings):
    make_user("viewer", VIEWER)
    assert settings.SESSION_ABSOLUTE_TIMEOUT <= 12 * 3600
    with time_machine.travel(timezone.now(), tick=False) as clock:
        client = Client()
        _login(client)
        for _ in range(11 * 6 + 5):  # 11 h 50 min of requests every 10 min
            clock.shift(timedelta(minutes=10))
            assert client.get("/grid.json").status_code == 200
        clock.shift(timedelta(minutes=11))
        assert is_login_redirect(client.get("/grid.json"))
        assert _login(client).status_code == 302  # a new login starts a new lifetime
        assert client.get("/grid.json").status_code == 200


def test_deactivating_a_user_ends_their_session_on_the_next_request(db):
    user = make_user("viewer", VIEWER)
    client = Client()
    _login(client)
    assert client.get("/").status_code == 200
    user.is_active = False
    user.save()
    assert is_login_redirect(client.get("/"))
    assert is_login_redirect(client.get("/grid.json"))


# --- SEC-06: login throttling ---------------------------------------------------------------------


def _attempt(client, username, password="wrong-password-123"):
    response = _login(client, username, password)
    body = CSRF_TOKEN.sub(rb"\1", response.content).replace(username.encode(), b"USERNAME")
    return response.status_code, body


def test_the_eleventh_login_is_refused_without_checking_the_password(db, monkeypatch):
    make_user("viewer", VIEWER)
    checks = []
    original = AbstractBaseUser.check_password

    def counting(self, raw):
        checks.append(raw)
        return original(self, raw)

    monkeypatch.setattr(AbstractBaseUser, "check_password", counting)
    client = Client()
    answers = [_attempt(client, "viewer")[0] for _ in range(9)]
    assert answers == [200] * 9
    assert _attempt(client, "viewer")[0] == 429  # the 10th failure locks
    checks.clear()
    status, body = _attempt(client, "viewer", PASSWORD)  # right password, still locked
    assert status == 429
    assert checks == []
    assert b"Too many failed logins" in body
    other_ip = Client(REMOTE_ADDR="10.1.2.3")
    assert _login(other_ip).status_code == 302  # per username and IP


def test_locked_answers_are_identical_for_known_and_unknown_users(db):
    make_user("viewer", VIEWER)
    known, unknown = Client(), Client(REMOTE_ADDR="10.9.9.9")
    first_known, first_unknown = _attempt(known, "viewer"), _attempt(unknown, "nobody-here")
    assert first_known == first_unknown
    for _ in range(9):
        last_known, last_unknown = _attempt(known, "viewer"), _attempt(unknown, "nobody-here")
    assert last_known == last_unknown
    assert last_known[0] == 429


def test_the_lock_lifts_after_the_cool_off(db):
    make_user("viewer", VIEWER)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        client = Client()
        for _ in range(10):
            _attempt(client, "viewer")
        assert _login(client).status_code == 429
        clock.shift(timedelta(minutes=16))
        assert _login(client).status_code == 302


def test_every_login_success_and_failure_is_logged_and_audited(db, caplog):
    make_user("viewer", VIEWER)
    caplog.set_level(logging.INFO, logger="msp_dashboard.auth")
    client = Client(REMOTE_ADDR="192.0.2.7")
    _attempt(client, "viewer")
    _attempt(client, "ghost")
    assert _login(client).status_code == 302
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("login")]
    utc = r"at=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.search(rf"login failed username='viewer' ip=192\.0\.2\.7 {utc}", lines[0])
    assert re.search(rf"login failed username='ghost' ip=192\.0\.2\.7 {utc}", lines[1])
    assert re.search(rf"login ok username='viewer' ip=192\.0\.2\.7 {utc}", lines[2])
    events = AuditEvent.objects.filter(action__startswith="login").order_by("id")
    actions = [(e.action, e.outcome, e.source_ip) for e in events]
    assert actions == [
        ("login.failure", "failure", "192.0.2.7"),
        ("login.failure", "failure", "192.0.2.7"),
        ("login.success", "success", "192.0.2.7"),
    ]
    assert "'ghost'" in events[1].detail
    assert PASSWORD not in " ".join(lines + [e.detail for e in events])


def test_behind_the_proxy_the_real_ip_header_names_the_client(db, settings):
    from msp_dashboard.middleware import RealIPMiddleware

    make_user("viewer", VIEWER)
    settings.BEHIND_PROXY = True
    seen = []
    middleware = RealIPMiddleware(lambda request: seen.append(request.META["REMOTE_ADDR"]))
    from django.test import RequestFactory

    factory = RequestFactory()
    middleware(factory.get("/", HTTP_X_REAL_IP="203.0.113.9"))
    middleware(factory.get("/", HTTP_X_REAL_IP="not-an-ip"))
    assert seen == ["203.0.113.9", "127.0.0.1"]
    settings.BEHIND_PROXY = False
    RealIPMiddleware(lambda request: seen.append(request.META["REMOTE_ADDR"]))(
        factory.get("/", HTTP_X_REAL_IP="203.0.113.9")
    )
    assert seen[-1] == "127.0.0.1"
