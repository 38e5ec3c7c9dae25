from django.apps import AppConfig


class PortalsConfig(AppConfig):
    name = "portals"
    verbose_name = "Customers and status"

    def ready(self):
        from django.db.models.signals import post_migrate

        from . import accounts  # receivers: login audit, role changes

        post_migrate.connect(accounts.roles_after_migrate, dispatch_uid="portals-roles")
