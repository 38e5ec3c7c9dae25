"""Helpers shared by the role, security and canary tests (imported by name; no tests here):
every URL of the project as a concrete path, with real objects behind its parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from portals.models import Customer, CustomerGroup
from tests.grid_support import make_customer
from tests.roles_support import make_user
from tokens.crypto import encrypt, fingerprint, last4
from tokens.models import Credential, CredentialKind, CredentialOrigin
from tokens.services import audit_record

# Reachable without a login (SEC-04's allow-list); /static/ is whitenoise, outside the URLconf.
PUBLIC = {"login", "healthz", "admin:login"}
# Login pages: an anonymous request elsewhere must be sent to one of these.
LOGIN_PATHS = ("/login/", "/admin/login/")


@dataclass(frozen=True)
class Url:
    name: str  # "namespace:name", or the route for unnamed patterns
    path: str


def walk(patterns=None, prefix: str = "", namespace: str = ""):
    """(full name, route, pattern) for every URLPattern, depth first."""
    patterns = get_resolver().url_patterns if patterns is None else patterns
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            ns = namespace
            if entry.namespace:
                ns = f"{namespace}:{entry.namespace}" if namespace else entry.namespace
            yield from walk(entry.url_patterns, route, ns)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
            yield name, route, entry


@dataclass
class World:
    """One of everything, so each URL parameter names a real object."""

    customer: Customer
    credential: Credential
    msp: Credential
    user: object

    def value(self, name: str, param: str, admin_model=None):
        if param == "pk":
            return self.credential.pk if _is_credential_url(name) else self.customer.pk
        if param == "object_id":
            obj = admin_model.objects.order_by("pk").first() if admin_model else None
            return str(obj.pk) if obj is not None else "1"
        if param == "content_type_id":
            return ContentType.objects.get_for_model(Customer).pk
        if param == "app_label":
            return "portals"
        if param == "id":
            return self.user.pk
        return 1


def _is_credential_url(name: str) -> bool:
    return name in {"tokens:revoke", "tokens:disconnect", "tokens:forget", "tokens:test"}


def make_world() -> World:
    """A customer with groups, history and a portal authtoken, an MSP identity, a customer
    group, an audit event: every admin change form and every view has an object to show."""
    customer = make_customer("World")
    credential = _credential(CredentialKind.PORTAL_AUTHTOKEN, customer, "WORLD-portal-token-0001")
    msp = _credential(CredentialKind.MSP_AUTHTOKEN, None, "WORLD-msp-authtoken-0002")
    group = CustomerGroup.objects.create(name="World group")
    group.customers.add(customer)
    user = make_user("world-user")
    audit_record(action="customer.sync", detail="world")
    return World(customer=customer, credential=credential, msp=msp, user=user)


def _credential(kind, customer, secret: str) -> Credential:
    return Credential.objects.create(
        kind=kind,
        customer=customer,
        label=kind,
        secret_ciphertext=encrypt(secret),
        secret_last4=last4(secret),
        fingerprint=fingerprint(secret),
        origin=CredentialOrigin.IMPORTED,
    )


def admin_model_for(name: str):
    """The model behind an admin URL name like admin:portals_customer_change."""
    match = re.match(r"admin:(\w+?)_(\w+)_(\w+)$", name or "")
    if not match:
        return None
    for model in admin.site._registry:
        meta = model._meta
        if name.startswith(f"admin:{meta.app_label}_{meta.model_name}_"):
            return model
    return None


_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")
_REGEX_PARAM = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def all_urls(world: World) -> list[Url]:
    """Every URL pattern of the project as a concrete path."""
    urls = []
    for name, route, _pattern in walk():
        model = admin_model_for(name)
        params = _PARAM.findall(route)
        regex_params = _REGEX_PARAM.findall(route)
        kwargs = {p: world.value(name, p, model) for _, p in params}
        kwargs.update({p: world.value(name, p, model) for p in regex_params})
        if name:
            path = reverse(name, kwargs=kwargs or None)
        else:
            path = "/" + _PARAM.sub(lambda m, kw=kwargs: str(kw[m.group(2)]), route).lstrip("^")
            name = route
        urls.append(Url(name, path))
    return urls


def is_login_redirect(response) -> bool:
    location = response.get("Location", "") if response.status_code == 302 else ""
    return location.startswith(LOGIN_PATHS)


@pytest.fixture
def world(db):
    return make_world()
