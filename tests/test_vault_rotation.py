"""Key rotation (SEC-08): `manage.py rotate_token_keys` is batched, idempotent, resumable."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from tokens import crypto, services
from tokens.models import AuditEvent, Credential

pytestmark = pytest.mark.django_db

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
KEY_C = Fernet.generate_key().decode()


def _secret(n: int) -> str:
    return f"12353635607.{n:011d}.{n:032x}"


def _seed(count: int, *, oauth_every: int = 0) -> None:
    rows = []
    for n in range(count):
        oauth = bool(oauth_every) and n % oauth_every == 0
        credential = Credential(
            kind="oauth" if oauth else "msp_authtoken", label=f"c{n}", origin="imported"
        )
        services.credential_store_secret(credential, _secret(n))
        if oauth:
            credential.client_secret_ciphertext = crypto.encrypt(f"client-secret-{n:020d}")
        rows.append(credential)
    Credential.objects.bulk_create(rows, batch_size=500)


def _rotate(*args) -> str:
    """The credentials' line of the command's output (other stores follow, one line each)."""
    out = StringIO()
    call_command("rotate_token_keys", *args, stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert lines[1:] == ["alert channels: rotated=0 failed=0"]  # none in these tests
    return lines[0]


def test_rotate_1000_rows_then_remove_the_old_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    _seed(1000, oauth_every=10)
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    assert _rotate("--batch-size", "128") == "rotated=1000 failed=0 skipped=0"

    settings.FIELD_ENCRYPTION_KEYS = [KEY_B]
    credentials = list(Credential.objects.order_by("pk"))
    assert len(credentials) == 1000
    for n, credential in enumerate(credentials):
        assert services.credential_secret(credential) == _secret(n)
        if credential.kind == "oauth":
            assert services.credential_client_secret(credential) == f"client-secret-{n:020d}"
    event = AuditEvent.objects.get(action="keys.rotate")
    assert (event.outcome, event.actor_name) == ("success", "system")
    assert event.detail.startswith("rotated=1000 failed=0")


def test_a_second_run_skips_everything(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    _seed(50)
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    _rotate()
    before = list(Credential.objects.order_by("pk").values_list("secret_ciphertext", flat=True))

    assert _rotate("--batch-size", "7") == "rotated=0 failed=0 skipped=50"

    after = list(Credential.objects.order_by("pk").values_list("secret_ciphertext", flat=True))
    assert before == after
    assert AuditEvent.objects.filter(action="keys.rotate").count() == 2


def test_a_stopped_run_resumes(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    _seed(40)
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    for credential in Credential.objects.order_by("pk")[:15]:  # a run stopped after 15 rows
        credential.secret_ciphertext = crypto.rotate(credential.secret_ciphertext)
        credential.save(update_fields=["secret_ciphertext"])

    assert _rotate("--batch-size", "10") == "rotated=25 failed=0 skipped=15"


def test_rows_no_key_opens_are_counted_as_failed(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_C]
    _seed(3)
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    _seed(2)
    Credential.objects.filter(label="c1", secret_ciphertext__contains=crypto.key_id(KEY_A)).update(
        secret_ciphertext="garbage-without-prefix"
    )
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    with pytest.raises(CommandError, match="did not decrypt"):
        _rotate()

    event = AuditEvent.objects.get(action="keys.rotate")
    assert event.outcome == "failure"
    assert event.detail.startswith("rotated=1 failed=4")


def test_batch_size_must_be_positive():
    with pytest.raises(CommandError):
        _rotate("--batch-size", "0")
