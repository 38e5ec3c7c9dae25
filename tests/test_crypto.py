"""tokens.crypto and the encryption-key system checks (SEC-07)."""

import base64

import pytest
from cryptography.fernet import Fernet
from django.core.checks import run_checks

from tokens import crypto
from tokens.checks import check_field_encryption_keys

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
SECRET = "12353635607.13213743991.0123456789abcdef0123"


def _ids(errors):
    return [e.id for e in errors]


def test_round_trip_with_version_and_key_id_prefix(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    stored = crypto.encrypt(SECRET)
    version, kid, token = stored.split(":", 2)
    assert (version, kid) == ("v1", crypto.key_id(KEY_A))
    assert KEY_A not in stored and kid not in KEY_A
    assert crypto.decrypt(stored) == SECRET
    assert SECRET not in stored
    assert base64.b64encode(SECRET.encode()).decode() not in stored


def test_decrypting_with_a_wrong_key_raises_and_returns_nothing(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    stored = crypto.encrypt(SECRET)
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B]
    with pytest.raises(crypto.DecryptionError) as info:
        crypto.decrypt(stored)
    assert SECRET not in str(info.value)
    assert info.value.__suppress_context__


@pytest.mark.parametrize(
    "stored",
    ["", "plain-text-token", "v2:abcd1234:gAAAA", "v1:abcd1234:not-a-fernet-token"],
)
def test_malformed_stored_values_raise(settings, stored):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(stored)


def test_a_tampered_ciphertext_raises(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    stored = crypto.encrypt(SECRET)
    tampered = stored[:-6] + ("A" if stored[-6] != "A" else "B") + stored[-5:]
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(tampered)


def test_old_keys_still_decrypt_and_rotation_moves_to_the_primary(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    old = crypto.encrypt(SECRET)
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    assert crypto.decrypt(old) == SECRET
    assert crypto.needs_rotation(old)
    new = crypto.rotate(old)
    assert not crypto.needs_rotation(new)
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B]
    assert crypto.decrypt(new) == SECRET


def test_masking_shows_at_most_the_last_four():
    assert crypto.last4(SECRET) == "0123"
    assert crypto.last4("short-token") == ""
    assert crypto.masked("0123") == "••••0123"
    assert crypto.masked("") == "••••"
    assert crypto.fingerprint(SECRET) == crypto.fingerprint(SECRET)
    assert SECRET not in crypto.fingerprint(SECRET)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([], ["tokens.E001"]),
        (["  "], ["tokens.E001"]),
        (["not-a-fernet-key"], ["tokens.E002"]),
        ([KEY_A, "short"], ["tokens.E002"]),
        ([KEY_A], []),
        ([KEY_A, KEY_B], []),
    ],
)
def test_system_check_on_keys(settings, keys, expected):
    settings.FIELD_ENCRYPTION_KEYS = keys
    assert _ids(check_field_encryption_keys(None)) == expected


def test_system_check_refuses_a_key_equal_to_secret_key(settings):
    settings.SECRET_KEY = KEY_A
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    assert _ids(check_field_encryption_keys(None)) == ["tokens.E003"]


def test_the_check_is_registered_and_stops_start_up(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    errors = [e for e in run_checks() if e.id and e.id.startswith("tokens.")]
    assert _ids(errors) == ["tokens.E001"]
    assert errors[0].is_serious()


def test_encrypting_without_keys_raises(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    with pytest.raises(crypto.KeyConfigError):
        crypto.encrypt(SECRET)
