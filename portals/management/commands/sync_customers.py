"""`manage.py sync_customers`: read every MSP credential's customer list now."""

from django.core.management.base import BaseCommand

from portals.services import customers_sync_all


class Command(BaseCommand):
    help = "Sync customers from every active MSP credential; prints the counts per credential."

    def handle(self, *args, **options):
        reports = customers_sync_all()
        if not reports:
            self.stdout.write("No active MSP credential (MSP authtoken or OAuth identity).")
        for report in reports:
            name = f"credential {report.credential_id} ({report.label})"
            if report.result is None:
                self.stdout.write(self.style.ERROR(f"{name}: failed: {report.error}"))
            else:
                self.stdout.write(f"{name}: {report.result}")
