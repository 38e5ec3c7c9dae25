"""Admin for credentials and the audit trail. No ciphertext is ever shown; a secret can only be
replaced through a write-only field ("leave blank to keep")."""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from . import errors, services
from .access import client_ip
from .models import AuditEvent, Credential, CredentialKind
from .signals import acting


class CredentialAdminForm(forms.ModelForm):
    new_secret = forms.CharField(
        label="Token",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The authtoken, or the OAuth refresh token. Leave blank to keep the current one.",
    )
    new_client_secret = forms.CharField(
        label="Client secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="OAuth identities only. Leave blank to keep the current one.",
    )

    class Meta:
        model = Credential
        fields = ["kind", "label", "data_centre", "customer", "client_id"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.secret_last4:
            self.fields["new_secret"].help_text = (
                f"Stored: {self.instance.masked_secret}. Leave blank to keep the current token; "
                "a new one makes the credential active again."
            )

    def clean(self):
        data = super().clean()
        adding = self.instance.pk is None
        kind = data.get("kind") or self.instance.kind
        if adding and not data.get("new_secret"):
            self.add_error("new_secret", "A new credential needs its token.")
        if adding and kind == CredentialKind.OAUTH:
            if not data.get("client_id"):
                self.add_error("client_id", "An OAuth identity needs its client id.")
            if not data.get("new_client_secret"):
                self.add_error("new_client_secret", "An OAuth identity needs its client secret.")
        if adding and kind == CredentialKind.PORTAL_AUTHTOKEN and not data.get("customer"):
            self.add_error("customer", "A portal authtoken belongs to a customer.")
        return data


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    form = CredentialAdminForm
    list_display = (
        "kind",
        "label",
        "customer",
        "state",
        "secret",
        "data_centre",
        "created_at",
        "last_tested_at",
        "last_test_ok",
    )
    list_filter = ("kind", "state", "data_centre", "origin")
    search_fields = ("label", "customer__name", "client_id", "fingerprint")
    list_select_related = ("customer",)
    actions = ["test_selected", "revoke_selected"]
    status_fields = (
        "secret",
        "fingerprint",
        "state",
        "state_reason",
        "origin",
        "created_at",
        "created_by",
        "invalid_since",
        "revoked_at",
        "last_used_at",
        "last_tested_at",
        "last_test_ok",
        "last_test_error",
    )

    @admin.display(description="Secret")
    def secret(self, obj):
        return obj.masked_secret

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["kind", "label", "data_centre", "customer", "client_id", "new_secret"] + [
                "new_client_secret"
            ]
        editable = ["label", "data_centre", "client_id", "new_secret"]
        if obj.kind == CredentialKind.OAUTH:
            editable.append("new_client_secret")
        return ["kind", "customer", *editable, *self.status_fields]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("kind", "customer", *self.status_fields)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        who = {"actor": request.user, "ip": client_ip(request)}
        if not change:
            created = services.credential_import(
                kind=obj.kind,
                secret=data["new_secret"],
                customer=obj.customer,
                data_centre=obj.data_centre,
                label=obj.label,
                client_id=obj.client_id,
                client_secret=data.get("new_client_secret", ""),
                **who,
            )
            obj.__dict__.update(created.__dict__)
            return
        obj.save(update_fields=["label", "data_centre", "client_id"])
        services.credential_replace_secret(
            credential=obj,
            secret=data.get("new_secret", ""),
            client_secret=data.get("new_client_secret", ""),
            **who,
        )

    def delete_model(self, request, obj):
        with acting(request.user, client_ip(request)):
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with acting(request.user, client_ip(request)):
            super().delete_queryset(request, queryset)

    @admin.action(description="Test connection of the selected credentials")
    def test_selected(self, request, queryset):
        ok = failed = 0
        for credential in queryset.select_related("customer"):
            try:
                tested = services.credential_test(
                    credential=credential, actor=request.user, ip=client_ip(request)
                )
            except errors.CredentialError as exc:
                self.message_user(request, f"{credential}: {exc.message}", messages.WARNING)
                continue
            ok, failed = (ok + 1, failed) if tested.last_test_ok else (ok, failed + 1)
        level = messages.SUCCESS if not failed else messages.WARNING
        self.message_user(request, f"Tested: {ok} OK, {failed} failed.", level)

    @admin.action(description="Revoke the selected credentials at Site24x7")
    def revoke_selected(self, request, queryset):
        if request.POST.get("post") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Revoke credentials?",
                "opts": self.model._meta,
                "credentials": queryset.select_related("customer"),
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(
                request, "admin/tokens/credential/revoke_confirmation.html", context
            )
        for credential in queryset.select_related("customer"):
            try:
                services.credential_revoke(
                    credential=credential, actor=request.user, ip=client_ip(request)
                )
            except errors.CredentialError as exc:
                self.message_user(request, f"{credential}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{credential} revoked.", messages.SUCCESS)
        return None


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit trail is append-only."""

    list_display = (
        "at",
        "action",
        "outcome",
        "actor_name",
        "source_ip",
        "customer_name",
        "credential_fingerprint",
        "detail",
    )
    list_filter = ("action", "outcome", ("at", admin.DateFieldListFilter))
    search_fields = ("actor_name", "customer_name", "credential_fingerprint", "detail", "source_ip")
    date_hierarchy = "at"
    actions = None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
