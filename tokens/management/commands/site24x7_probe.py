"""`manage.py site24x7_probe`: try each Site24x7 flow once with the configured credentials.

Read-only upstream (nothing created or deleted; the OAuth access token comes from the shared
cache, so normally no mint). Prints a table and suggestions, never a secret; `--report FILE`
writes the same as redacted JSON for a support ticket. Exit status: 0 the configured setup
works, 1 something it needs failed, 2 no credentials configured.
The probing itself is `msp_dashboard.site24x7.probe`; see docs/connecting-a-real-account.md.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from msp_dashboard.site24x7 import Site24x7Error
from msp_dashboard.site24x7.probe import (
    EXIT_NO_CREDENTIALS,
    FAIL,
    NEEDED,
    LegacySetup,
    OAuthIdentity,
    OAuthSetup,
    ProbeRow,
    Switches,
    render_table,
    run_probe,
)
from portals.models import Customer
from tokens.crypto import DecryptionError, last4, masked
from tokens.models import Credential, CredentialKind, CredentialState
from tokens.services import credential_client_secret, credential_secret, oauth_access_token
from tokens.upstream import get_client, switch_errors, switch_values

NO_CREDENTIALS = (
    "No Site24x7 credentials are configured. Add an MSP authtoken, an OAuth identity or a "
    "customer portal authtoken on the Credentials page (the vault), or set SITE24X7_MSP_AUTHTOKEN, "
    "or SITE24X7_CLIENT_ID + SITE24X7_CLIENT_SECRET + SITE24X7_REFRESH_TOKEN in .env."
)


@dataclass
class Gathered:
    """What the probe gets, plus where each credential came from (for the header)."""

    legacy: LegacySetup | None = None
    oauth: OAuthSetup | None = None
    preflight: list[ProbeRow] = field(default_factory=list)
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)


class Command(BaseCommand):
    help = (
        "Try each Site24x7 flow once (read-only) with the configured credentials and print "
        "what works; exit 0 when the configured setup works, 1 when something it needs "
        "failed, 2 when no credentials are configured."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--customer",
            metavar="NAME",
            help="the customer to read (default: the first customer with an active portal "
            "authtoken, and the first customer Site24x7 lists for OAuth)",
        )
        parser.add_argument(
            "--report", metavar="FILE", help="also write a redacted JSON report to FILE"
        )

    def handle(self, *args, customer=None, report=None, **options):
        if switch_errors():
            raise CommandError("; ".join(switch_errors()))
        gathered = gather(customer_name=customer)
        if gathered.legacy is None and gathered.oauth is None and not gathered.preflight:
            self.stderr.write(NO_CREDENTIALS)
            raise CommandError("no credentials configured", returncode=EXIT_NO_CREDENTIALS)
        result = run_probe(
            legacy=gathered.legacy,
            oauth=gathered.oauth,
            switches=current_switches(),
            preflight=gathered.preflight,
        )
        self.stdout.write(result.redact(render(result, gathered)))
        if report:
            document = {
                "tool": "msp_dashboard site24x7_probe",
                "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "credentials": gathered.credentials,
                **result.to_dict(),
            }
            text = result.redact(json.dumps(document, indent=2, ensure_ascii=False))
            Path(report).write_text(text + "\n", encoding="utf-8")
            self.stdout.write(f"Report written to {report}")
        if result.exit_status:
            raise CommandError(result.verdict, returncode=result.exit_status)


def current_switches() -> Switches:
    return Switches(
        legacy_status_source=settings.SITE24X7_LEGACY_STATUS_SOURCE,
        oauth_status_source=settings.SITE24X7_OAUTH_STATUS_SOURCE,
        zaid_via=settings.SITE24X7_ZAID_VIA,
        zaaid_via=settings.SITE24X7_ZAAID_VIA,
        accept_version=settings.SITE24X7_ACCEPT_VERSION,
    )


# --- gathering the configured credentials -----------------------------------------------------


def gather(*, customer_name: str | None) -> Gathered:
    gathered = Gathered()
    customer = _customer(customer_name)
    _gather_legacy(gathered, customer, customer_name)
    _gather_oauth(gathered, customer, customer_name)
    return gathered


def _customer(name: str | None) -> Customer | None:
    if not name:
        return None
    return Customer.objects.filter(name__iexact=name.strip()).order_by("pk").first()


def _active(kind: str, **filters) -> Credential | None:
    return (
        Credential.objects.filter(kind=kind, state=CredentialState.ACTIVE, **filters)
        .select_related("customer")
        .order_by("-created_at", "-id")
        .first()
    )


def _portal_credential(customer: Customer | None, customer_name: str | None) -> Credential | None:
    if customer is not None:
        return _active(CredentialKind.PORTAL_AUTHTOKEN, customer=customer)
    if customer_name:
        return None  # a named customer the dashboard does not know has no portal token here
    return (
        Credential.objects.filter(
            kind=CredentialKind.PORTAL_AUTHTOKEN,
            state=CredentialState.ACTIVE,
            customer__isnull=False,
        )
        .exclude(customer__zaid="")
        .select_related("customer")
        .order_by("customer__name", "-created_at", "-id")
        .first()
    )


def _decrypted(gathered: Gathered, credential: Credential, what: str) -> str | None:
    """The secret, or None and a failed pre-flight row when it does not decrypt."""
    try:
        return credential_secret(credential)
    except DecryptionError:
        row = ProbeRow(f"vault/{credential.kind}", f"vault: {what}", "vault", NEEDED)
        row.result, row.error = FAIL, "secret"
        row.message = "the stored secret does not decrypt with FIELD_ENCRYPTION_KEYS"
        gathered.preflight.append(row)
        return None


def _gather_legacy(gathered: Gathered, customer: Customer | None, name: str | None) -> None:
    msp = _active(CredentialKind.MSP_AUTHTOKEN)
    msp_token, data_centre = None, settings.SITE24X7_DATA_CENTRE
    if msp is not None:
        msp_token, data_centre = _decrypted(gathered, msp, "MSP authtoken"), msp.data_centre
        _note(gathered, "msp_authtoken", "vault", msp.secret_last4)
    elif settings.SITE24X7_MSP_AUTHTOKEN:
        msp_token = settings.SITE24X7_MSP_AUTHTOKEN
        _note(gathered, "msp_authtoken", ".env", last4(msp_token))
    portal = _portal_credential(customer, name)
    portal_token, zaid, customer_name = None, None, ""
    if portal is not None:
        portal_token = _decrypted(gathered, portal, "customer portal authtoken")
        zaid, customer_name = portal.customer.zaid or None, portal.customer.name
        data_centre = portal.customer.data_centre if msp is None else data_centre
        _note(gathered, "portal_authtoken", "vault", portal.secret_last4, customer_name)
    if msp_token or portal_token:
        gathered.legacy = LegacySetup(
            client=get_client(data_centre),
            msp_authtoken=msp_token,
            portal_authtoken=portal_token,
            zaid=zaid,
            customer_name=customer_name,
        )


def _gather_oauth(gathered: Gathered, customer: Customer | None, name: str | None) -> None:
    zaaid = customer.zaaid if customer is not None and customer.zaaid else None
    customer_name = customer.name if customer is not None else (name or "")
    identity = _active(CredentialKind.OAUTH)
    if identity is not None:
        try:
            credential_client_secret(identity)
            credential_secret(identity)
        except DecryptionError:
            _decrypted(gathered, identity, "OAuth identity")
            return
        _note(gathered, "oauth", "vault (shared access-token cache)", identity.secret_last4)
        gathered.oauth = OAuthSetup(
            client=get_client(identity.data_centre),
            access_token=_supplier(identity),
            zaaid=zaaid,
            customer_name=customer_name,
        )
        return
    env = (settings.SITE24X7_CLIENT_ID, settings.SITE24X7_CLIENT_SECRET)
    refresh_token = settings.SITE24X7_REFRESH_TOKEN
    if all(env) and refresh_token:
        _note(gathered, "oauth", ".env (mints one access token)", last4(refresh_token))
        gathered.oauth = OAuthSetup(
            client=get_client(settings.SITE24X7_DATA_CENTRE),
            identity=OAuthIdentity(env[0], env[1], refresh_token),
            zaaid=zaaid,
            customer_name=customer_name,
        )


def _supplier(identity: Credential):
    """Access tokens through the shared cache (minted at most once, behind the lock)."""

    def supply(rejected: str | None) -> str:
        try:
            return oauth_access_token(credential=identity, rejected=rejected)
        except DecryptionError:
            raise Site24x7Error(
                "the stored OAuth identity does not decrypt with FIELD_ENCRYPTION_KEYS"
            ) from None

    return supply


def _note(gathered: Gathered, kind: str, source: str, last_four: str, customer: str = "") -> None:
    entry = {"source": source, "secret": masked(last_four)}
    if customer:
        entry["customer"] = customer
    gathered.credentials[kind] = entry


# --- rendering ----------------------------------------------------------------------------------


def render(result, gathered: Gathered) -> str:
    lines = ["Site24x7 probe (read-only: nothing is created or deleted upstream)"]
    for generation, hosts in result.hosts.items():
        lines.append(
            f"  {generation}: data centre {hosts['data_centre']}, API {hosts['api']}, "
            f"accounts {hosts['accounts']}"
        )
    for kind, entry in gathered.credentials.items():
        extra = f" of {entry['customer']}" if "customer" in entry else ""
        lines.append(f"  credential {kind}{extra}: {entry['secret']} from {entry['source']}")
    for generation, name in result.customers.items():
        lines.append(f"  {generation} customer read: {name}")
    switches = switch_values()
    lines.append("  switches: " + ", ".join(f"{k}={v}" for k, v in switches.items()))
    lines += ["", render_table(result), ""]
    if result.suggestions:
        lines.append("What to do:")
        lines += [f"  - {tip}" for tip in result.suggestions]
        lines.append("")
    lines.append(f"Exit status {result.exit_status}: {result.verdict}.")
    return "\n".join(lines)
