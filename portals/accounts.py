"""Users, roles and logins (issue 6).

Roles are Django auth Groups holding the custom permissions of portals.Customer and
tokens.Credential; the views check those permissions only through portals.access and
tokens.access. The Groups are created by the data migration portals.0005_roles and kept
whole after every `migrate` (the Admin group gains every permission added later).

| role          | grid, customer page, grid.json | refresh now, sync | credentials | Django admin |
| ------------- | ------------------------------ | ----------------- | ----------- | ------------ |
| Viewer        | yes                            |                   |             |              |
| Operator      | yes                            | yes               |             |              |
| Token manager | yes                            | yes               | yes         |              |
| Admin         | yes                            | yes               | yes         | yes (staff)  |

Every login, failed login, lock-out, logout and role or scope change is written to the audit
trail and logged with username, source IP and UTC time (SEC-06, SEC-12)."""

from __future__ import annotations

import logging
import time
from datetime import UTC

from django.apps import apps as global_apps
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.db.models import Q
from django.db.models.signals import m2m_changed, post_save
from django.dispatch import receiver
from django.utils import timezone

from .models import UserScope

logger = logging.getLogger("msp_dashboard.auth")

VIEWER, OPERATOR, TOKEN_MANAGER, ADMIN = "Viewer", "Operator", "Token manager", "Admin"
VIEW = "portals.view_dashboard"
REFRESH = "portals.refresh_customer"
SYNC = "portals.sync_customers"
CREDENTIALS = "tokens.manage_credentials"
ALL = "*"
ROLES: dict[str, tuple[str, ...]] = {
    VIEWER: (VIEW,),
    OPERATOR: (VIEW, REFRESH, SYNC),
    TOKEN_MANAGER: (VIEW, REFRESH, SYNC, CREDENTIALS),
    ADMIN: (ALL,),
}
"""Role -> permissions ("app_label.codename"); ALL: every permission there is."""


def roles_ensure(*, apps=global_apps, using: str = "default") -> None:
    """Create missing role Groups and give each the permissions ROLES declares for it (Admin:
    every permission). Idempotent and additive: a permission an admin added to a role stays;
    one that ROLES declares comes back at the next `migrate` (roles are defined here; make a
    new Group for a custom role). Another app declares its permissions for a role by adding
    them to ROLES (a permission that does not exist yet is skipped)."""
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    every = permission_model.objects.using(using).all()
    for name, wanted in ROLES.items():
        group, _ = group_model.objects.using(using).get_or_create(name=name)
        if wanted == (ALL,):
            group.permissions.add(*every)
        else:
            group.permissions.add(*_permissions(permission_model, wanted, using))


def _permissions(permission_model, names, using):
    found = []
    for name in names:
        app_label, codename = name.split(".", 1)
        found += permission_model.objects.using(using).filter(
            content_type__app_label=app_label, codename=codename
        )
    return found


def roles_after_migrate(sender, app_config=None, using: str = "default", apps=None, **kwargs):
    """post_migrate: keep the roles whole (also after a test flush empties the tables). Runs
    once, after the last app's own receivers, so every permission exists by then."""
    with_models = [c for c in global_apps.get_app_configs() if c.models_module is not None]
    if app_config is not None and app_config.label != with_models[-1].label:
        return
    roles_ensure(using=using)


# --- permissions in one query -------------------------------------------------------------------


class RoleBackend(ModelBackend):
    """ModelBackend whose permission set (the user's own and its groups') comes from one query
    instead of two, so a role-holding user's grid stays within PERF-01's query budget."""

    def get_all_permissions(self, user_obj, obj=None):
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            from django.contrib.auth.models import Permission

            perms = Permission.objects.all()
            if not user_obj.is_superuser:
                perms = perms.filter(Q(user=user_obj) | Q(group__user=user_obj))
            pairs = perms.values_list("content_type__app_label", "codename").order_by()
            user_obj._perm_cache = {f"{app}.{codename}" for app, codename in pairs.distinct()}
        return user_obj._perm_cache


# --- assigning a role ---------------------------------------------------------------------------


def user_set_role(*, user, role: str | None, actor=None, ip: str | None = None) -> None:
    """Make `role` the user's only role (None: no role at all). Admins are staff (the Django
    admin); nobody else is. Audited through the group-membership signal below."""
    from django.contrib.auth.models import Group

    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    with transaction.atomic(), _acting(actor, ip):
        roles_ensure()
        user.groups.remove(*Group.objects.filter(name__in=ROLES).exclude(name=role))
        if role is not None:
            user.groups.add(Group.objects.get(name=role))
        user.is_staff = role == ADMIN or user.is_superuser
        user.save(update_fields=["is_staff"])


def user_set_scope(*, user, groups=None, all_customers: bool = False, actor=None, ip=None):
    """Limit the user to the customers of `groups` (or lift the limit: all_customers=True)."""
    with transaction.atomic(), _acting(actor, ip):
        scope, _ = UserScope.objects.get_or_create(user=user)
        scope.all_customers = all_customers
        scope.save(update_fields=["all_customers"])
        scope.groups.set(groups or [])
    return scope


def _acting(actor, ip):
    from tokens.signals import acting

    return acting(actor, ip)


# --- audit of logins and role changes -----------------------------------------------------------


def _audit(action: str, *, outcome: str = "success", actor=None, ip=None, detail: str = ""):
    from tokens.services import audit_record

    return audit_record(action=action, outcome=outcome, actor=actor, ip=ip, detail=detail)


def _ip(request) -> str | None:
    from tokens.access import client_ip

    return client_ip(request) if request is not None else None


def _utc() -> str:
    return timezone.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _username(value) -> str:
    """A submitted username as printable text of bounded length (it is attacker-controlled)."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value or ""))
    return text[:150]


@receiver(user_logged_in, dispatch_uid="accounts-login")
def _logged_in(sender, request, user, **kwargs):
    from tokens.models import AuditAction

    if request is not None and hasattr(request, "session"):
        # Read by msp_dashboard.middleware.SessionTimeoutMiddleware (absolute and idle limits).
        request.session["auth_at"] = request.session["seen_at"] = time.time()
    ip = _ip(request)
    logger.info("login ok username=%r ip=%s at=%s", user.get_username(), ip, _utc())
    _audit(AuditAction.LOGIN_SUCCESS, actor=user, ip=ip, detail="password login")


@receiver(user_login_failed, dispatch_uid="accounts-login-failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    from tokens.models import AuditAction, AuditOutcome

    name = _username(credentials.get(get_user_model().USERNAME_FIELD))
    locked = bool(getattr(request, "axes_locked_out", False))
    ip = _ip(request)
    suffix = " (locked out)" if locked else ""
    logger.warning("login failed username=%r ip=%s at=%s%s", name, ip, _utc(), suffix)
    action = AuditAction.LOGIN_LOCKED if locked else AuditAction.LOGIN_FAILURE
    _audit(action, outcome=AuditOutcome.FAILURE, ip=ip, detail=f"username {name!r}")


@receiver(user_logged_out, dispatch_uid="accounts-logout")
def _logged_out(sender, request, user, **kwargs):
    from tokens.models import AuditAction

    if user is None:
        return
    ip = _ip(request)
    logger.info("logout username=%r ip=%s at=%s", user.get_username(), ip, _utc())
    _audit(AuditAction.LOGOUT, actor=user, ip=ip)


@receiver(m2m_changed, sender=get_user_model().groups.through, dispatch_uid="accounts-roles")
def _groups_changed(sender, instance, action, reverse, pk_set, **kwargs):
    """A role granted or taken away, from the admin, a service or the shell."""
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if not pk_set and action != "post_clear":
        return
    from django.contrib.auth.models import Group

    if reverse:  # group.user_set.add(...): instance is the group
        users = list(get_user_model().objects.filter(pk__in=pk_set or []))
        groups = [instance.name]
    else:
        users = [instance]
        groups = list(Group.objects.filter(pk__in=pk_set or []).values_list("name", flat=True))
    verb = {"post_add": "granted", "post_remove": "removed", "post_clear": "all removed"}[action]
    for user in users:
        _audit_role(user, f"{verb}: {', '.join(sorted(groups)) or '-'}")


@receiver(m2m_changed, sender=UserScope.groups.through, dispatch_uid="accounts-scope-groups")
def _scope_groups_changed(sender, instance, action, reverse, **kwargs):
    if action in ("post_add", "post_remove", "post_clear") and not reverse:
        _audit_role(instance.user, f"customer scope groups {action[5:]}: {scope_text(instance)}")


@receiver(post_save, sender=UserScope, dispatch_uid="accounts-scope")
def _scope_saved(sender, instance, created, **kwargs):
    verb = "set" if created else "changed"
    _audit_role(instance.user, f"customer scope {verb}: {scope_text(instance)}")


def scope_text(scope) -> str:
    if scope.all_customers:
        return "all customers"
    names = sorted(scope.groups.values_list("name", flat=True))
    return "groups " + (", ".join(names) if names else "(none)")


def _audit_role(user, text: str) -> None:
    from tokens.models import AuditAction
    from tokens.signals import current_actor

    actor, ip = current_actor()
    logger.info("role change user=%r %s by=%s", user.get_username(), text, actor or "system")
    detail = f"user {user.get_username()!r}: {text}"
    _audit(AuditAction.ROLE_CHANGE, actor=actor, ip=ip, detail=detail)
