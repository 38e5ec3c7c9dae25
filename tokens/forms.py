"""Forms of the credential views. Secret fields are write-only: never rendered back."""

from django import forms

from msp_dashboard.site24x7 import DATA_CENTRES


def _secret_field(label: str, help_text: str = "", **kwargs) -> forms.CharField:
    return forms.CharField(
        label=label,
        help_text=help_text,
        strip=True,
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}
        ),
        **kwargs,
    )


def _dc_choices():
    return [(code, code) for code in DATA_CENTRES]


class TokenField(forms.CharField):
    """A pasted token: one line, no spaces."""

    def clean(self, value):
        value = super().clean(value)
        if value and any(ch.isspace() for ch in value):
            raise forms.ValidationError("A token has no spaces; paste it again.", code="space")
        if value and len(value) < 16:
            raise forms.ValidationError("That is too short for a Site24x7 token.", code="short")
        return value


def _token_field(label: str, help_text: str = "") -> TokenField:
    return TokenField(
        label=label,
        help_text=help_text,
        max_length=2000,
        widget=forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}
        ),
    )


class CreateTokenForm(forms.Form):
    email = forms.EmailField(
        label="Portal login email",
        help_text="A user of the customer's client portal allowed to create API tokens.",
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
    password = forms.CharField(
        label="Portal password",
        strip=False,
        help_text="Used for this one call to Site24x7, then discarded: never stored.",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )
    label = forms.CharField(label="Label", max_length=100, required=False)


class ImportTokenForm(forms.Form):
    token = _token_field("Portal authtoken", "Paste the customer's client-portal authtoken.")
    label = forms.CharField(label="Label", max_length=100, required=False)


class MspImportForm(forms.Form):
    label = forms.CharField(label="Label", max_length=100)
    data_centre = forms.ChoiceField(label="Data centre", choices=_dc_choices, initial="US")
    token = _token_field("MSP authtoken", "The MSP account's authtoken (legacy).")


class OAuthConnectForm(forms.Form):
    label = forms.CharField(label="Label", max_length=100)
    data_centre = forms.ChoiceField(label="Data centre", choices=_dc_choices, initial="US")
    client_id = forms.CharField(
        label="Client ID", max_length=200, widget=forms.TextInput(attrs={"autocomplete": "off"})
    )
    client_secret = _secret_field("Client secret", max_length=500)
    grant_code = _secret_field(
        "Grant code",
        "From the Self Client of the API console: it works once and expires within minutes.",
        max_length=500,
    )
