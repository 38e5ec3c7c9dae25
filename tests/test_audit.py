"""The audit trail is append-only (SEC-12): the model, its queryset and, on PostgreSQL, a
trigger refuse UPDATE and DELETE."""

import datetime as dt

import pytest
from django.db import DatabaseError, connection, transaction

from tests.conftest import need
from tokens.models import AuditEvent, AuditImmutableError
from tokens.services import audit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(django_user_model):
    user = django_user_model.objects.create_user("auditor")
    return audit_record(action="credential.test", actor=user, ip="2001:db8::1", detail="checked")


def test_a_record_holds_actor_utc_time_ip_action_outcome(event):
    event = AuditEvent.objects.get(pk=event.pk)
    assert event.actor_name == "auditor" and event.actor_id is not None
    assert event.at.utcoffset() == dt.timedelta(0)
    assert event.source_ip == "2001:db8::1"
    assert (event.action, event.outcome, event.detail) == ("credential.test", "success", "checked")


def test_system_actor_without_a_user():
    event = audit_record(action="keys.rotate")
    assert (event.actor_id, event.actor_name, event.source_ip) == (None, "system", None)


def test_save_of_an_existing_event_is_refused(event):
    event.detail = "rewritten"
    with pytest.raises(AuditImmutableError):
        event.save()
    assert AuditEvent.objects.get(pk=event.pk).detail == "checked"


def test_delete_of_an_event_is_refused(event):
    with pytest.raises(AuditImmutableError):
        event.delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_queryset_update_and_delete_are_refused(event):
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.filter(pk=event.pk).update(detail="rewritten")
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.update(detail="rewritten")
    with pytest.raises(AuditImmutableError):
        AuditEvent.objects.all().delete()
    event.detail = "rewritten"
    with pytest.raises(AuditImmutableError), transaction.atomic():
        AuditEvent.objects.bulk_update([event], ["detail"])
    assert AuditEvent.objects.get(pk=event.pk).detail == "checked"


def test_postgres_trigger_refuses_raw_update_and_delete(event):
    need(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL)")
    for sql in (
        "UPDATE tokens_auditevent SET detail = 'rewritten' WHERE id = %s",
        "DELETE FROM tokens_auditevent WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [event.pk])
    with connection.cursor() as cursor:
        cursor.execute("SELECT detail FROM tokens_auditevent WHERE id = %s", [event.pk])
        assert cursor.fetchone() == ("checked",)
        cursor.execute(
            "INSERT INTO tokens_auditevent (at, actor_name, action, customer_name,"
            " credential_fingerprint, outcome, detail) VALUES"
            " (now(), 'raw', 'keys.rotate', '', '', 'success', 'insert ok')"
        )
    assert AuditEvent.objects.filter(actor_name="raw").count() == 1
