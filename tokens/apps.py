from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Credentials and audit"

    def ready(self):
        from . import checks  # noqa: F401  (registers the encryption-key system checks)
