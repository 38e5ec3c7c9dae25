"""Roles (issue 6): the Groups Viewer, Operator, Token manager and Admin with their permissions.

Permissions are normally created after all migrations (post_migrate); they are created here
first so the Groups can hold them. The definitions are frozen in this file; afterwards
portals.accounts.roles_ensure (post_migrate) only adds missing groups and gives Admin every
permission added later."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW = ("portals", "view_dashboard")
REFRESH = ("portals", "refresh_customer")
SYNC = ("portals", "sync_customers")
CREDENTIALS = ("tokens", "manage_credentials")
ROLES = {
    "Viewer": [VIEW],
    "Operator": [VIEW, REFRESH, SYNC],
    "Token manager": [VIEW, REFRESH, SYNC, CREDENTIALS],
}


def create_roles(apps, schema_editor):
    using = schema_editor.connection.alias
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=using)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for name, perms in ROLES.items():
        group, _ = group_model.objects.using(using).get_or_create(name=name)
        for app_label, codename in perms:
            group.permissions.add(
                permission_model.objects.using(using).get(
                    content_type__app_label=app_label, codename=codename
                )
            )
    admin, _ = group_model.objects.using(using).get_or_create(name="Admin")
    admin.permissions.add(*permission_model.objects.using(using).all())


def remove_roles(apps, schema_editor):
    group_model = apps.get_model("auth", "Group")
    names = [*ROLES, "Admin"]
    group_model.objects.using(schema_editor.connection.alias).filter(name__in=names).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("portals", "0004_roles_and_scopes"),
        ("tokens", "0004_roles_and_login_audit"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
