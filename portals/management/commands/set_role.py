"""`manage.py set_role USERNAME ROLE [--groups NAME ...]`: give a user one role (Viewer,
Operator, "Token manager", Admin, or none) and optionally limit it to customer groups."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portals.accounts import ROLES, scope_text, user_set_role, user_set_scope
from portals.models import CustomerGroup, UserScope


class Command(BaseCommand):
    help = "Give a user one role and, optionally, a customer scope (audited)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("role", choices=[*ROLES, "none"])
        parser.add_argument("--groups", nargs="*", help="Limit the user to these customer groups.")
        parser.add_argument("--all-customers", action="store_true", help="Lift any limit.")

    def handle(self, *args, username, role, groups=None, all_customers=False, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        user_set_role(user=user, role=None if role == "none" else role)
        if groups is not None or all_customers:
            found = list(CustomerGroup.objects.filter(name__in=groups or []))
            missing = set(groups or []) - {g.name for g in found}
            if missing:
                raise CommandError(f"no customer group named {', '.join(sorted(missing))}")
            user_set_scope(user=user, groups=found, all_customers=all_customers)
        scope = UserScope.objects.filter(user=user).first()
        text = scope_text(scope) if scope else "all customers (no scope)"
        self.stdout.write(f"{username}: role {role}; {text}")
