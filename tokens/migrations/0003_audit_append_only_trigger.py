"""On PostgreSQL the database itself refuses UPDATE and DELETE on the audit table (SEC-12),
whatever code or role runs them. TRUNCATE stays possible (test flushes, deliberate purges by an
operator). SQLite relies on the model and queryset guards."""

from django.db import migrations

TABLE = "tokens_auditevent"

CREATE = f"""
CREATE OR REPLACE FUNCTION tokens_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused on {TABLE})', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS tokens_auditevent_append_only ON {TABLE};
CREATE TRIGGER tokens_auditevent_append_only
    BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION tokens_auditevent_append_only();
"""

DROP = f"""
DROP TRIGGER IF EXISTS tokens_auditevent_append_only ON {TABLE};
DROP FUNCTION IF EXISTS tokens_auditevent_append_only();
"""


def _on_postgres(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("tokens", "0002_audit_actions")]

    operations = [migrations.RunPython(_on_postgres(CREATE), _on_postgres(DROP))]
