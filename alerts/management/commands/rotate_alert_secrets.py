"""Re-encrypt the alert channels' webhook URLs and signing secrets with the primary key."""

from django.core.management.base import BaseCommand

from alerts.services import channels_rotate_keys


class Command(BaseCommand):
    help = "Re-encrypt alert channel secrets with the primary FIELD_ENCRYPTION_KEYS key."

    def handle(self, *args, **options):
        rotated, failed = channels_rotate_keys()
        self.stdout.write(f"rotated={rotated} failed={failed}")
        if failed:
            raise SystemExit(1)
