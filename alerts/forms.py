"""Forms of the alerts views. Webhook URLs and signing secrets are write-only: never rendered
back, never echoed in an error message."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.validators import validate_email
from django.utils import timezone

from portals.models import CustomerGroup

from .models import AlertChannel, ChannelKind

ACK_EXPIRY = [
    ("", "Until it recovers or gets worse"),
    ("1", "1 hour (or until it recovers)"),
    ("4", "4 hours"),
    ("8", "8 hours"),
    ("24", "24 hours"),
    ("72", "3 days"),
]
MUTE_FOR = [
    ("1", "1 hour"),
    ("2", "2 hours"),
    ("4", "4 hours"),
    ("8", "8 hours"),
    ("24", "24 hours"),
    ("72", "3 days"),
    ("168", "1 week"),
    ("custom", "Until…"),
]


def _write_only(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        help_text=help_text,
        required=False,
        max_length=2000,
        strip=True,
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}
        ),
    )


class ChannelForm(forms.ModelForm):
    url = _write_only(
        "Webhook URL",
        "Slack, Teams or your own endpoint. Stored encrypted; afterwards only its last four "
        "characters are shown. Leave blank to keep the current one.",
    )
    remove_url = forms.BooleanField(required=False, label="Remove the stored URL")
    signing_secret = _write_only(
        "Signing secret (webhook only, optional)",
        "Each request then carries X-MSP-Signature: sha256=<HMAC of the body>. Leave blank to "
        "keep the current one.",
    )
    customer_groups = forms.ModelMultipleChoiceField(
        queryset=CustomerGroup.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Only customers of these groups; none ticked: every customer.",
    )

    class Meta:
        model = AlertChannel
        fields = [
            "name",
            "kind",
            "enabled",
            "recipients",
            "customer_groups",
            "hold_refreshes",
            "include_groups",
            "notify_recovery",
        ]
        widgets = {"recipients": forms.Textarea(attrs={"rows": 2})}
        labels = {
            "hold_refreshes": "Hold for refreshes",
            "include_groups": "Alert on monitor groups too",
            "notify_recovery": "Send recovery notices",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["hold_refreshes"].widget.attrs["min"] = 1
        self.fields["hold_refreshes"].help_text = (
            f"A new status must hold this many refreshes before it alerts; empty: "
            f"{settings.ALERT_HOLD_REFRESHES} (ALERT_HOLD_REFRESHES)."
        )

    def clean_recipients(self):
        value = self.cleaned_data.get("recipients", "")
        channel = AlertChannel(recipients=value)
        for address in channel.recipient_list():
            try:
                validate_email(address)
            except forms.ValidationError:
                raise forms.ValidationError(f"{address[:60]} is not an email address.") from None
        return "\n".join(channel.recipient_list())

    def clean_hold_refreshes(self):
        value = self.cleaned_data.get("hold_refreshes")
        if value is not None and not 1 <= value <= 20:
            raise forms.ValidationError("Between 1 and 20 refreshes.")
        return value

    def clean_url(self):
        url = self.cleaned_data.get("url", "")
        if not url:
            return url
        parts = urlsplit(url)
        schemes = ("https", "http") if settings.ALERT_ALLOW_HTTP else ("https",)
        if parts.scheme not in schemes or not parts.hostname or any(c.isspace() for c in url):
            need = "an https:// URL" if len(schemes) == 1 else "an http(s):// URL"
            # Never echo the value: it embeds a token.
            raise forms.ValidationError(f"That is not {need}; paste the webhook URL again.")
        return url

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        has_url = bool(data.get("url")) or (
            self.instance.pk and self.instance.url_ciphertext and not data.get("remove_url")
        )
        if kind == ChannelKind.EMAIL and not data.get("recipients"):
            self.add_error("recipients", "An email channel needs at least one recipient.")
        if kind and kind != ChannelKind.EMAIL and not has_url:
            self.add_error("url", "This kind of channel needs a webhook URL.")
        return data

    def new_url(self) -> str | None:
        """None: keep the stored URL; "": remove it; else the new one."""
        if self.cleaned_data.get("url"):
            return self.cleaned_data["url"]
        return "" if self.cleaned_data.get("remove_url") else None

    def new_signing_secret(self) -> str | None:
        return self.cleaned_data.get("signing_secret") or None


class AcknowledgeForm(forms.Form):
    group_id = forms.ChoiceField(label="What", required=False)
    note = forms.CharField(
        label="Note",
        max_length=300,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "e.g. ISP outage, ticket #4711"}),
    )
    expires = forms.ChoiceField(label="Expires", choices=ACK_EXPIRY, required=False)

    def __init__(self, *args, groups=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group_id"].choices = [("", "The whole customer")] + [
            (cell.group_id, f"Group {cell.name} ({cell.label})") for cell in groups
        ]

    def expires_at(self):
        hours = self.cleaned_data.get("expires")
        return timezone.now() + timedelta(hours=int(hours)) if hours else None


class MuteForm(forms.Form):
    duration = forms.ChoiceField(label="Mute for", choices=MUTE_FOR, initial="2")
    until = forms.DateTimeField(
        label="Until (when “Until…” is chosen)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
    )
    note = forms.CharField(
        label="Reason",
        max_length=300,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "e.g. firewall upgrade"}),
    )

    def clean(self):
        data = super().clean()
        if data.get("duration") == "custom" and not data.get("until"):
            self.add_error("until", "Choose when the mute ends.")
        return data

    def end_time(self):
        if self.cleaned_data["duration"] == "custom":
            return self.cleaned_data["until"]
        return timezone.now() + timedelta(hours=int(self.cleaned_data["duration"]))
