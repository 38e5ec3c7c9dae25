"""Roles and customer scopes (issue 6, SEC-04): deny by default, no IDOR, every denial audited.

Every URL of the resolver is requested, anonymously and as each role, with GET and POST; the
customers and credentials behind the URLs are real rows, the upstream is the simulator."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from portals.accounts import ADMIN, OPERATOR, ROLES, TOKEN_MANAGER, VIEWER, user_set_role
from portals.models import Customer, CustomerGroup, UserScope
from tests.grid_support import add_token, make_customer
from tests.roles_support import make_user
from tests.test_security_support import PUBLIC, all_urls, is_login_redirect, walk
from tokens.models import AuditEvent, Credential

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.test_security_support"]


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    """Passwords hashed in microseconds: the login tests are about throttling, not PBKDF2."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


HTMX = {"HTTP_HX_REQUEST": "true"}
RANK = {"none": 0, VIEWER: 1, OPERATOR: 2, TOKEN_MANAGER: 3, ADMIN: 4, "superuser": 5}
# URLs whose POST ends the session: requested last, once.
SESSION_ENDERS = {"logout", "admin:logout"}


def _need(name: str, method: str):
    """The least role that may use `name` with `method`; "public"; or "method" when the
    method is not allowed at all. None: a URL of another app (generic checks only)."""
    get_only = {
        "portals:grid",
        "portals:grid-rows",
        "portals:grid-json",
        "portals:customer",
        "tokens:list",
        "tokens:customer",
    }
    if name in {"login", "healthz", "admin:login"}:
        return "method" if (name, method) == ("healthz", "POST") else "public"
    if name in get_only:
        if method != "GET":
            return "method"
        return TOKEN_MANAGER if name.startswith("tokens:") else VIEWER
    if name in {"portals:customer-refresh", "portals:sync"}:
        return OPERATOR if method == "POST" else "method"
    if name == "tokens:test":
        return TOKEN_MANAGER if method == "POST" else "method"
    if name.startswith("tokens:"):
        return TOKEN_MANAGER
    if name.startswith("admin:"):
        return ADMIN
    return None


def _outcome(response, *, logged_in: bool) -> str:
    if response.status_code == 405:
        return "method"
    if response.status_code in (403, 404):
        return "denied"
    if is_login_redirect(response):
        # The admin answers a logged-in user without the role with its own login form.
        return "denied" if logged_in else "login"
    return "ok"


def _request(client, method: str, path: str):
    return client.get(path) if method == "GET" else client.post(path)


def _ordered(urls):
    return sorted(urls, key=lambda u: u.name in SESSION_ENDERS)


def _user_for(role: str):
    if role == "superuser":
        from django.contrib.auth import get_user_model

        return get_user_model().objects.create_superuser("root", password="a-long-root-pass-1")
    return make_user(f"user-{RANK[role]}", None if role == "none" else role)


# --- anonymous ------------------------------------------------------------------------------


def test_every_url_needs_a_login_except_the_allow_list(client, world):
    urls = all_urls(world)
    assert len(urls) > 40
    open_to_anyone = set()
    for url in urls:
        for method in ("GET", "POST"):
            response = _request(client, method, url.path)
            # 405: another app's view that checks the method before the login; it does
            # nothing and shows nothing (ours check the login first).
            if is_login_redirect(response) or response.status_code in (403, 405):
                continue
            open_to_anyone.add(url.name)
            assert url.name in PUBLIC | SESSION_ENDERS, (method, url, response.status_code)
    # The logouts: GET is 405 or a redirect to the admin index, POST ends nobody's session.
    assert PUBLIC <= open_to_anyone <= PUBLIC | SESSION_ENDERS
    assert not AuditEvent.objects.filter(action="access.denied").exists()


def test_allow_list_pages_answer():
    client = Client()
    assert client.get("/login/").status_code == 200
    assert client.get("/admin/login/").status_code == 200
    assert client.get("/healthz").status_code in (200, 503)


# --- the matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(RANK))
def test_role_matrix(role, simulator, world):
    """Each role gets exactly its URLs with each method; the Admin role gets in the Django
    admin exactly what a superuser gets."""
    client = Client()
    client.force_login(_user_for(role))
    seen = {}
    for url in _ordered(all_urls(world)):
        for method in ("GET", "POST"):
            if url.name in SESSION_ENDERS:  # the logouts: checked at the end
                continue
            outcome = _outcome(_request(client, method, url.path), logged_in=True)
            seen[(url.name, method)] = outcome
            need = _need(url.name, method)
            if need is None:  # another app's URL: a user without a role is refused
                if role == "none":
                    assert outcome in ("denied", "method"), (role, method, url)
                continue
            if need in ("public", "method"):
                expected = "ok" if need == "public" else "method"
            elif need == ADMIN and RANK[role] >= RANK[ADMIN]:
                continue  # compared with the superuser below
            else:
                expected = "ok" if RANK[role] >= RANK[need] else "denied"
            assert outcome == expected, (role, method, url, outcome)
    if role == ADMIN:
        root = Client()
        root.force_login(_user_for("superuser"))
        for url in _ordered(all_urls(world)):
            if not url.name.startswith("admin:") or url.name == "admin:logout":
                continue
            for method in ("GET", "POST"):
                response = _request(root, method, url.path)
                assert _outcome(response, logged_in=True) == seen[(url.name, method)], url
    # The session survives everything above but the logout, which ends it.
    response = client.post("/logout/")
    assert is_login_redirect(response)
    assert is_login_redirect(client.get("/"))


def test_every_named_url_of_ours_is_in_the_matrix():
    ours = ("portals:", "tokens:", "admin:")
    names = {name for name, _, _ in walk() if name}
    unknown = {n for n in names if n.startswith(ours) and _need(n, "GET") is None}
    assert unknown == set()
    assert {"login", "logout", "healthz"} <= names


def test_roles_are_groups_with_their_permissions():
    def perms(role):  # ours; other apps add theirs to the roles (alerts.acknowledge, ...)
        group = Group.objects.get(name=role)
        permissions = group.permissions.filter(content_type__app_label__in=["portals", "tokens"])
        return {f"{p.content_type.app_label}.{p.codename}" for p in permissions}

    assert perms(VIEWER) == {"portals.view_dashboard"}
    assert perms(OPERATOR) == {
        "portals.view_dashboard",
        "portals.refresh_customer",
        "portals.sync_customers",
    }
    assert perms(TOKEN_MANAGER) == perms(OPERATOR) | {"tokens.manage_credentials"}
    assert Group.objects.get(name=ADMIN).permissions.count() == Permission.objects.count()
    assert set(ROLES) == {VIEWER, OPERATOR, TOKEN_MANAGER, ADMIN}


def test_admin_role_is_staff_and_other_roles_are_not():
    user = make_user("climber", VIEWER)
    assert not user.is_staff
    user_set_role(user=user, role=ADMIN)
    user.refresh_from_db()
    assert user.is_staff
    assert list(user.groups.values_list("name", flat=True)) == [ADMIN]
    user_set_role(user=user, role=OPERATOR)
    user.refresh_from_db()
    assert not user.is_staff
    assert list(user.groups.values_list("name", flat=True)) == [OPERATOR]
    changes = AuditEvent.objects.filter(action="role.change").values_list("detail", flat=True)
    assert any("granted: Admin" in d for d in changes)
    assert any("removed: Admin" in d for d in changes)


def test_a_user_without_a_role_is_refused_and_told_why(client):
    client.force_login(make_user("nobody"))
    response = client.get("/")
    assert response.status_code == 403
    assert "ask an admin for a role" in response.content.decode()
    assert AuditEvent.objects.filter(action="access.denied", actor_name="nobody").count() == 1


# --- buttons follow the role ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "refresh", "sync", "tokens"),
    [
        (VIEWER, False, False, False),
        (OPERATOR, True, True, False),
        (TOKEN_MANAGER, True, True, True),
        (ADMIN, True, True, True),
    ],
)
def test_buttons_follow_the_role(client, role, refresh, sync, tokens):
    customer = make_customer("Buttons")
    add_token(customer)
    client.force_login(make_user("b", role))
    grid = client.get("/").content.decode()
    page = client.get(f"/customers/{customer.pk}/").content.decode()
    assert ("/customers/{pk}/refresh/" in grid) is refresh
    assert ('action="/customers/sync/"' in grid) is sync
    assert (f"/customers/{customer.pk}/refresh/" in page) is refresh
    assert ("/credentials/new" in page) is tokens
    assert ('href="/credentials/"' in grid) is tokens
    assert ('href="/admin/"' in grid) is (role == ADMIN)


# --- customer scopes ------------------------------------------------------------------------


@pytest.fixture
def scoped(db):
    """Two customers, A (in group "North") and B; a token manager limited to North."""
    a = make_customer("Alpha North")
    b = make_customer("Bravo South")
    a_token, b_token = add_token(a, last4="aaaa"), add_token(b, last4="bbbb")
    north = CustomerGroup.objects.create(name="North")
    north.customers.add(a)
    user = make_user("limited", TOKEN_MANAGER)
    UserScope.objects.create(user=user).groups.add(north)
    return {"a": a, "b": b, "a_token": a_token, "b_token": b_token, "user": user}


def test_a_scoped_user_sees_only_its_customers(client, scoped):
    client.force_login(scoped["user"])
    grid = client.get("/").content.decode()
    assert "Alpha North" in grid and "Bravo South" not in grid
    rows = client.get("/grid/rows/", **HTMX).content.decode()
    assert "Alpha North" in rows and "Bravo South" not in rows
    raw = client.get("/grid.json").content
    assert b"Bravo South" not in raw  # nowhere in the JSON: rows, banners, counts
    data = json.loads(raw)
    assert [row["name"] for row in data["customers"]] == ["Alpha North"]
    assert data["summary"]["customers"] == 1
    listing = client.get("/credentials/").content.decode()
    assert "••••aaaa" in listing and "••••bbbb" not in listing


def test_a_scoped_user_gets_404_for_the_real_ids_outside_its_scope(client, scoped, simulator):
    b, b_token = scoped["b"], scoped["b_token"]
    client.force_login(scoped["user"])
    before = AuditEvent.objects.filter(action="access.denied").count()
    attempts = [
        ("get", f"/customers/{b.pk}/"),
        ("get", f"/customers/{b.pk}/", HTMX),
        ("post", f"/customers/{b.pk}/refresh/"),
        ("get", f"/customers/{b.pk}/credentials"),
        ("get", f"/customers/{b.pk}/credentials/new"),
        ("post", f"/customers/{b.pk}/credentials/new"),
        ("get", f"/customers/{b.pk}/credentials/import"),
        ("post", f"/customers/{b.pk}/credentials/import"),
        ("get", f"/credentials/{b_token.pk}/revoke"),
        ("post", f"/credentials/{b_token.pk}/revoke"),
        ("post", f"/credentials/{b_token.pk}/test"),
        ("get", f"/credentials/{b_token.pk}/forget"),
        ("post", f"/credentials/{b_token.pk}/forget"),
    ]
    for method, path, *extra in attempts:
        response = getattr(client, method)(path, **(extra[0] if extra else {}))
        assert response.status_code == 404, (method, path)
    denials = AuditEvent.objects.filter(action="access.denied").count() - before
    assert denials == len(attempts)  # one audit event per denial
    assert Credential.objects.get(pk=b_token.pk).state == "active"
    # Inside the scope the same requests work.
    assert client.get(f"/customers/{scoped['a'].pk}/").status_code == 200


def test_msp_wide_actions_need_an_unlimited_scope(client, scoped):
    client.force_login(scoped["user"])
    assert client.get("/credentials/msp/import").status_code == 403
    assert client.get("/credentials/oauth/connect").status_code == 403
    assert client.post("/customers/sync/").status_code == 403
    assert 'action="/customers/sync/"' not in client.get("/").content.decode()


def test_no_scope_or_all_customers_sees_everything_and_admins_always_do(client, scoped):
    viewer = make_user("wide", VIEWER)
    client.force_login(viewer)
    assert client.get(f"/customers/{scoped['b'].pk}/").status_code == 200
    UserScope.objects.create(user=viewer, all_customers=True)
    assert client.get(f"/customers/{scoped['b'].pk}/").status_code == 200
    boss = make_user("boss", ADMIN)
    UserScope.objects.create(user=boss)  # limited to no group at all: still an admin
    client.force_login(boss)
    data = json.loads(client.get("/grid.json").content)
    assert {row["name"] for row in data["customers"]} == {"Alpha North", "Bravo South"}


def test_an_empty_scope_sees_nothing(client, db):
    make_customer("Hidden")
    user = make_user("empty", VIEWER)
    UserScope.objects.create(user=user)
    client.force_login(user)
    data = json.loads(client.get("/grid.json").content)
    assert data["customers"] == []
    assert data["summary"]["customers"] == 0


def test_scope_changes_are_audited(scoped):
    details = list(AuditEvent.objects.filter(action="role.change").values_list("detail", flat=True))
    assert any("'limited'" in d and "customer scope set" in d for d in details)
    assert any("customer scope groups add: groups North" in d for d in details)


# --- denials are audited once ---------------------------------------------------------------


def test_each_denial_writes_one_audit_event(client, db):
    customer = make_customer("Audited")
    client.force_login(make_user("viewer", VIEWER))
    cases = [
        ("post", f"/customers/{customer.pk}/refresh/"),
        ("post", "/customers/sync/"),
        ("get", "/credentials/"),
        ("get", "/admin/"),
        ("get", f"/customers/{customer.pk + 1000}/"),
    ]
    for method, path in cases:
        before = AuditEvent.objects.filter(action="access.denied").count()
        getattr(client, method)(path)
        events = AuditEvent.objects.filter(action="access.denied")
        assert events.count() == before + 1, path
        assert path in events.first().detail
        assert events.first().actor_name == "viewer"


def test_a_staff_user_without_model_permissions_is_audited_by_the_403_handler(client, db):
    staff = make_user("half-admin", OPERATOR)
    staff.is_staff = True  # staff by hand, without the Admin role's permissions
    staff.save()
    client.force_login(staff)
    assert client.get("/admin/").status_code == 200  # staff: the index (empty)
    response = client.get("/admin/portals/customer/")
    assert response.status_code == 403
    events = AuditEvent.objects.filter(action="access.denied", actor_name="half-admin")
    assert events.count() == 1
    assert Customer.objects.count() == 0


def test_set_role_command_gives_a_role_and_a_scope(db):
    from io import StringIO

    from django.core.management import call_command

    user = make_user("ops")
    CustomerGroup.objects.create(name="North")
    out = StringIO()
    call_command("set_role", "ops", "Operator", "--groups", "North", stdout=out)
    assert out.getvalue().strip() == "ops: role Operator; groups North"
    user.refresh_from_db()
    assert list(user.groups.values_list("name", flat=True)) == [OPERATOR]
    assert list(user.customer_scope.groups.values_list("name", flat=True)) == ["North"]
    call_command("set_role", "ops", "Admin", "--all-customers", stdout=out)
    user.refresh_from_db()
    assert user.is_staff and user.customer_scope.all_customers
