import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create or update the demo admin user with DEMO_ADMIN_PASSWORD (demo only)."

    def handle(self, *args, **options):
        password = os.environ.get("DEMO_ADMIN_PASSWORD")
        if not password:
            raise CommandError("DEMO_ADMIN_PASSWORD is not set")
        username = os.environ.get("DEMO_ADMIN_USER", "admin")
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"Demo login: {username} / {password}")
