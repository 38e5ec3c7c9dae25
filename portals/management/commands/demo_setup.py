"""Prepare the demo (or a first start against a real account) through the real services.

With the simulator: import its MSP authtoken (or, with DEMO_AUTH=oauth, connect its OAuth
Self Client), sync its customers, and create one client-portal authtoken per customer from
the portal logins the simulator lists, exactly as a token manager would. With real
credentials in .env: import them into the vault and sync. Safe to run again: nothing is
created twice."""

import os
import time

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portals.models import Customer
from portals.services import customers_sync_all
from portals.tasks import refresh_due
from tokens import services as vault
from tokens.crypto import fingerprint
from tokens.errors import CredentialError
from tokens.models import Credential, CredentialKind, CredentialState


class Command(BaseCommand):
    help = "Prepare the demo: wait for the simulator, sync its customers, give each a credential."

    def handle(self, *args, **options):
        sim = os.environ.get("DEMO_SIMULATOR_URL")
        if sim:
            self._wait_for(sim)
            self._simulator_identity(sim, os.environ.get("DEMO_AUTH", "legacy"))
        else:
            self._env_identities()
        for report in customers_sync_all():
            self.stdout.write(f"sync: {report}")
        if sim:
            self._portal_tokens(sim)
        refresh_due.delay()
        self._banner()

    def _wait_for(self, url: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/_sim/health", timeout=1).raise_for_status()
                return
            except requests.RequestException:
                time.sleep(0.3)
        raise CommandError(f"the simulator at {url} did not answer within 30 s")

    def _simulator_identity(self, url: str, auth: str) -> None:
        creds = requests.get(f"{url}/_sim/credentials", timeout=5).json()
        if auth == "oauth":
            if not _active(CredentialKind.OAUTH).exists():
                vault.credential_oauth_connect(
                    client_id=creds["client_id"],
                    client_secret=creds["client_secret"],
                    grant_code=creds["grant_code"],
                    label="Simulator (OAuth)",
                )
            return
        self._import_once(CredentialKind.MSP_AUTHTOKEN, creds["msp_authtoken"], "Simulator MSP")

    def _env_identities(self) -> None:
        if settings.SITE24X7_MSP_AUTHTOKEN:
            self._import_once(
                CredentialKind.MSP_AUTHTOKEN, settings.SITE24X7_MSP_AUTHTOKEN, "MSP (.env)"
            )
        if settings.SITE24X7_REFRESH_TOKEN and settings.SITE24X7_CLIENT_ID:
            self._import_once(
                CredentialKind.OAUTH,
                settings.SITE24X7_REFRESH_TOKEN,
                "OAuth (.env)",
                client_id=settings.SITE24X7_CLIENT_ID,
                client_secret=settings.SITE24X7_CLIENT_SECRET,
            )

    def _import_once(self, kind: str, secret: str, label: str, **extra) -> None:
        if Credential.objects.filter(kind=kind, fingerprint=fingerprint(secret)).exists():
            return
        vault.credential_import(
            kind=kind,
            secret=secret,
            label=label,
            data_centre=settings.SITE24X7_DATA_CENTRE,
            **extra,
        )

    def _portal_tokens(self, url: str) -> None:
        logins = {
            c["portal_id"]: c
            for c in requests.get(f"{url}/_sim/customers", timeout=10).json()["customers"]
        }
        legacy = Customer.objects.filter(is_active=True, auth_generation="legacy")
        created = 0
        for customer in legacy.exclude(credentials__state=CredentialState.ACTIVE):
            login = logins.get(customer.portal_id)
            if not login:
                continue
            try:
                vault.credential_create(
                    customer=customer, email=login["email"], password=login["password"]
                )
                created += 1
            except CredentialError as exc:
                self.stderr.write(f"{customer.name}: {exc}")
        self.stdout.write(f"created {created} client-portal authtokens")

    def _banner(self) -> None:
        port = os.environ.get("WEB_PORT") or os.environ.get("PORT", "8000")
        user = os.environ.get("DEMO_ADMIN_USER", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "(unchanged)")
        line = "=" * 64
        self.stdout.write(
            f"\n{line}\n  MSP dashboard: http://127.0.0.1:{port}/\n"
            f"  Log in as {user} / {password}\n{line}\n"
        )


def _active(kind: str):
    return Credential.objects.filter(kind=kind, state=CredentialState.ACTIVE)
