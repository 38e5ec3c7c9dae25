from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Credentials and audit"

    def ready(self):
        from . import checks, signals, upstream  # noqa: F401  (system checks and receivers)
