from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Credentials and audit"

    def ready(self):
        from . import checks, signals  # noqa: F401  (registers system checks and receivers)
