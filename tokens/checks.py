from django.conf import settings
from django.core.checks import Error, Tags, register

from .crypto import KeyConfigError, _keyring


@register(Tags.security, deploy=False)
def check_field_encryption_keys(app_configs, **kwargs):
    keys = tuple(k.strip() for k in getattr(settings, "FIELD_ENCRYPTION_KEYS", []) if k.strip())
    hint = (
        "Generate one with: python -c 'from cryptography.fernet import Fernet; "
        "print(Fernet.generate_key().decode())' and set FIELD_ENCRYPTION_KEYS."
    )
    if not keys:
        return [Error("FIELD_ENCRYPTION_KEYS is not set.", hint=hint, id="tokens.E001")]
    try:
        _keyring(keys)
    except KeyConfigError:
        msg = "FIELD_ENCRYPTION_KEYS holds a malformed key (each must be a Fernet key)."
        return [Error(msg, hint=hint, id="tokens.E002")]
    if settings.SECRET_KEY in keys:
        msg = "FIELD_ENCRYPTION_KEYS must not reuse SECRET_KEY."
        return [Error(msg, hint=hint, id="tokens.E003")]
    return []
