"""Credential views for token managers: thin, function-based; every state change is a POST.

Each form works as a full page and, for htmx requests, as a bare fragment the grid opens in a
dialog. After a success an htmx request gets a short fragment and `HX-Trigger:
credentials-changed`; a normal request is redirected with a message."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from . import errors, services
from .access import (
    client_ip,
    credentials_for_user,
    get_credential_for_user,
    get_customer_for_token_manager,
    require_token_manager,
)
from .forms import CreateTokenForm, ImportTokenForm, MspImportForm, OAuthConnectForm
from .models import Credential, CredentialKind, CredentialState

CHANGED_EVENT = "credentials-changed"
GET_POST = require_http_methods(["GET", "POST"])


def _render(request, fragment: str, context: dict, status: int = 200):
    """The fragment alone for htmx, else the full page around it."""
    if request.htmx:
        return render(request, fragment, context, status=status)
    return render(request, "tokens/page.html", {**context, "fragment": fragment}, status=status)


def _done(request, message: str, to: str, *, ok: bool = True):
    if request.htmx:
        response = render(request, "tokens/_done.html", {"message": message, "ok": ok})
        response["HX-Trigger"] = CHANGED_EVENT
        return response
    (messages.success if ok else messages.error)(request, message)
    return redirect(to)


def _home(credential: Credential) -> str:
    if credential.customer_id:
        return reverse("tokens:customer", args=[credential.customer_id])
    return reverse("tokens:list")


def _who(request) -> dict:
    return {"actor": request.user, "ip": client_ip(request)}


@never_cache
@login_required
@require_http_methods(["GET"])
def credential_list(request):
    require_token_manager(request)
    visible = credentials_for_user(request.user)
    msp = visible.filter(customer__isnull=True).order_by("state", "-created_at")
    customer_tokens = (
        visible.filter(customer__isnull=False)
        .exclude(state=CredentialState.REVOKED)
        .select_related("customer")
        .order_by("customer__name", "-created_at")
    )
    context = {"msp_credentials": msp, "customer_credentials": customer_tokens}
    return render(request, "tokens/list.html", context)


@never_cache
@login_required
@require_http_methods(["GET"])
def customer_credentials(request, pk):
    customer = get_customer_for_token_manager(request, pk)
    context = {
        "customer": customer,
        "credentials": customer.credentials.order_by("state", "-created_at", "-id"),
        "live": services.credential_live_count(customer=customer),
        "cap": services.TOKEN_CAP,
        "in_use": services.credential_for_customer(customer),
    }
    return render(request, "tokens/customer.html", context)


@never_cache
@sensitive_post_parameters("password")
@login_required
@GET_POST
def credential_create(request, pk):
    customer = get_customer_for_token_manager(request, pk)
    live = services.credential_live_count(customer=customer)
    form = CreateTokenForm(request.POST or None)
    context = {"customer": customer, "live": live, "cap": services.TOKEN_CAP}
    if request.method == "POST" and form.is_valid():
        try:
            credential = services.credential_create(
                customer=customer,
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                label=form.cleaned_data["label"],
                **_who(request),
            )
        except errors.CredentialError as exc:
            form.add_error(None, exc.message)
            context["error_code"] = exc.code
        else:
            message = f"Authtoken {credential.masked_secret} created for {customer.name}."
            return _done(request, message, _home(credential))
    return _render(request, "tokens/_create_form.html", {**context, "form": form})


@never_cache
@sensitive_post_parameters("token")
@login_required
@GET_POST
def credential_import(request, pk):
    customer = get_customer_for_token_manager(request, pk)
    form = ImportTokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            credential = services.credential_paste(
                kind=CredentialKind.PORTAL_AUTHTOKEN,
                secret=form.cleaned_data["token"],
                customer=customer,
                label=form.cleaned_data["label"],
                **_who(request),
            )
        except errors.CredentialError as exc:
            form.add_error(None, exc.message)
        else:
            message = f"Authtoken {credential.masked_secret} imported for {customer.name}."
            return _done(request, message, _home(credential))
    return _render(request, "tokens/_import_form.html", {"customer": customer, "form": form})


@never_cache
@sensitive_post_parameters("token")
@login_required
@GET_POST
def msp_import(request):
    require_token_manager(request, msp=True)
    form = MspImportForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            credential = services.credential_paste(
                kind=CredentialKind.MSP_AUTHTOKEN,
                secret=form.cleaned_data["token"],
                data_centre=form.cleaned_data["data_centre"],
                label=form.cleaned_data["label"],
                **_who(request),
            )
        except errors.CredentialError as exc:
            form.add_error(None, exc.message)
        else:
            message = f"MSP authtoken {credential.masked_secret} imported."
            return _done(request, message, _home(credential))
    return _render(request, "tokens/_msp_import_form.html", {"form": form})


@never_cache
@sensitive_post_parameters("client_secret", "grant_code")
@login_required
@GET_POST
def oauth_connect(request):
    require_token_manager(request, msp=True)
    form = OAuthConnectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            credential = services.credential_oauth_connect(**form.cleaned_data, **_who(request))
        except errors.CredentialError as exc:
            form.add_error(None, exc.message)
        else:
            message = f"OAuth identity {credential.label} connected ({credential.data_centre})."
            return _done(request, message, _home(credential))
    return _render(request, "tokens/_oauth_form.html", {"form": form})


@never_cache
@login_required
@GET_POST
def credential_revoke(request, pk):
    credential = get_credential_for_user(request, pk)
    context = {"credential": credential}
    if request.method == "POST":
        try:
            services.credential_revoke(credential=credential, **_who(request))
        except errors.CredentialError as exc:
            context.update(error=exc.message, error_code=exc.code)
            credential.refresh_from_db()
        else:
            verb = "disconnected" if credential.kind == CredentialKind.OAUTH else "revoked"
            return _done(request, f"{credential} {verb}.", _home(credential))
    return _render(request, "tokens/_revoke_confirm.html", context)


@never_cache
@login_required
@GET_POST
def credential_forget(request, pk):
    credential = get_credential_for_user(request, pk)
    context = {"credential": credential}
    if request.method == "POST":
        try:
            services.credential_forget(credential=credential, **_who(request))
        except errors.CredentialError as exc:
            context["error"] = exc.message
        else:
            return _done(request, f"{credential} forgotten here.", _home(credential))
    return _render(request, "tokens/_forget_confirm.html", context)


@never_cache
@login_required
@require_POST
def credential_test(request, pk):
    credential = get_credential_for_user(request, pk)
    try:
        credential = services.credential_test(credential=credential, **_who(request))
    except errors.CredentialError as exc:
        return _done(request, exc.message, _home(credential), ok=False)
    if credential.last_test_ok:
        return _done(request, f"{credential}: connection OK.", _home(credential))
    message = f"{credential}: test failed: {credential.last_test_error}"
    return _done(request, message, _home(credential), ok=False)
