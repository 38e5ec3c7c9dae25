import os
import time

import requests
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Prepare the demo: wait for the simulator, sync its customers, give each a credential."

    def handle(self, *args, **options):
        sim = os.environ.get("DEMO_SIMULATOR_URL")
        if sim:
            self._wait_for(sim)
        port = os.environ.get("PORT", "8000")
        user = os.environ.get("DEMO_ADMIN_USER", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "(unchanged)")
        self.stdout.write(
            "\n" + "=" * 64 + f"\n  MSP dashboard: http://127.0.0.1:{port}/\n"
            f"  Log in as {user} / {password}\n" + "=" * 64 + "\n"
        )

    def _wait_for(self, url: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/_sim/credentials", timeout=1).raise_for_status()
                return
            except requests.RequestException:
                time.sleep(0.3)
        raise CommandError(f"the simulator at {url} did not answer within 30 s")
