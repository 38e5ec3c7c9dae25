"""msp_dashboard.db.rows_write and rows_insert: what they write, and in how many statements."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.translation import gettext_lazy

from alerts.models import AlertState
from msp_dashboard import db as db_module
from msp_dashboard.db import (
    COMPILED_IDS,
    PLAIN_UPDATES,
    changed_fields,
    rows_for_ids,
    rows_insert,
    rows_write,
)
from msp_dashboard.site24x7 import Status
from portals.models import Customer, StatusChange
from tests.grid_support import make_customer

pytestmark = pytest.mark.django_db


def _customers(count: int) -> list[Customer]:
    return [make_customer(f"c{i}", last_error="old", consecutive_failures=1) for i in range(count)]


def test_alike_changes_share_one_plain_update():
    rows = _customers(6)
    changes = [
        (row, changed_fields(row, {"last_error": "", "consecutive_failures": 0})) for row in rows
    ]
    with CaptureQueriesContext(connection) as queries:
        assert rows_write(changes) == 1
    assert "CASE" not in queries[0]["sql"]
    assert set(Customer.objects.values_list("last_error", "consecutive_failures")) == {("", 0)}


def test_scattered_changes_write_each_rows_own_values_of_every_kind():
    """Past PLAIN_UPDATES distinct sets: one statement, each row its own values (durations,
    times, None, text, integers), rows left out untouched."""
    rows = _customers(PLAIN_UPDATES + 3)
    untouched = rows.pop()
    now = timezone.now()
    changes = []
    for i, row in enumerate(rows):
        values = {
            "last_duration": timedelta(milliseconds=100 + i),
            "last_attempt_at": now - timedelta(minutes=i),
            "last_error": f"error 'quoted' {i}" if i % 2 else "",
            "consecutive_failures": i,
            "paused_until": None if i % 2 else now + timedelta(hours=i),
        }
        changes.append((row, changed_fields(row, values)))
    with CaptureQueriesContext(connection) as queries:
        assert rows_write(changes) == 1
    assert len(queries) == 1
    if connection.vendor == "postgresql":  # not Django's CASE per field and row
        assert "CASE" not in queries[0]["sql"] and "VALUES" in queries[0]["sql"]
    for row, values in changes:
        stored = Customer.objects.get(pk=row.pk)
        assert {name: getattr(stored, name) for name in values} == values
    stored = Customer.objects.get(pk=untouched.pk)
    assert (stored.last_error, stored.consecutive_failures) == ("old", 1)


def test_scattered_json_and_boolean_fields():
    customer = make_customer("json")
    states = AlertState.objects.bulk_create(
        AlertState(customer=customer, group_id=f"g{i}", status=0, streak=0) for i in range(5)
    )
    changes = [
        (state, changed_fields(state, {"streak": i, "changes": [f"t{i}"], "flapping": i % 2 == 1}))
        for i, state in enumerate(states)
    ]
    rows_write(changes)
    stored = AlertState.objects.order_by("group_id")
    assert [(s.streak, s.changes, s.flapping) for s in stored] == [
        (i, [f"t{i}"], i % 2 == 1) for i in range(5)
    ]


def test_values_not_set_on_the_row_are_refused():
    row = _customers(1)[0]
    with pytest.raises(ValueError, match="rows_write"):
        rows_write([(row, {"last_error": "not set on the row"})])
    assert Customer.objects.get(pk=row.pk).last_error == "old"


# --- rows_insert -----------------------------------------------------------------------------

AWKWARD = "tab\there, line\nbreak, back\\slash, 'single' \"double\", \\N, é, 🚦"


def test_insert_writes_every_kind_of_value_in_one_statement():
    customer = make_customer("insert")
    now = timezone.now()
    states = [
        AlertState(
            customer=customer,
            group_id=f"g{i}",
            group_name=AWKWARD if i else "",
            status=i,
            streak=i + 1,
            observed_at=now - timedelta(seconds=i),
            confirmed={"1": i, "5": None},
            changes=[now.isoformat()] if i else [],
            flapping=i % 2 == 1,
            failing_since=None if i else now,
        )  # fmt: skip
        for i in range(4)
    ]
    with CaptureQueriesContext(connection) as queries:
        rows_insert(states)
    assert len(queries) == 1
    word = "COPY" if connection.vendor == "postgresql" else "INSERT"
    assert queries[0]["sql"].startswith(word)
    assert AWKWARD not in queries[0]["sql"]  # values go apart from the statement
    stored = AlertState.objects.filter(customer=customer).order_by("group_id")
    fields = ["group_id", "group_name", "status", "streak", "observed_at", "confirmed",
              "changes", "flapping", "failing_since", "last_success_at"]  # fmt: skip
    assert [[getattr(s, f) for f in fields] for s in stored] == [
        [getattr(s, f) for f in fields] for s in states
    ]


def test_insert_goes_through_the_connections_execute_wrappers():
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    customer = make_customer("wrapped")
    with connection.execute_wrapper(wrapper):
        rows_insert([StatusChange(customer=customer, to_status=0, at=timezone.now())])
    assert len(seen) == 1 and "portals_statuschange" in seen[0]
    assert StatusChange.objects.get(customer=customer).from_status is None


def test_insert_of_a_clashing_row_fails_whole_or_leaves_the_clash_out():
    customer = make_customer("clash")
    AlertState.objects.create(customer=customer, group_id="taken", status=2, streak=9)

    def rows():
        return [AlertState(customer=customer, group_id=g, status=0, streak=1)
                for g in ("new1", "taken", "new2")]  # fmt: skip

    with pytest.raises(IntegrityError), transaction.atomic():
        rows_insert(rows())
    assert AlertState.objects.filter(customer=customer).count() == 1
    with transaction.atomic():
        rows_insert(rows(), ignore_conflicts=True)
        assert AlertState.objects.filter(customer=customer).count() == 3  # usable after
    kept = AlertState.objects.get(customer=customer, group_id="taken")
    assert (kept.status, kept.streak) == (2, 9)


def test_insert_of_nothing_runs_no_statement():
    with CaptureQueriesContext(connection) as queries:
        rows_insert([])
    assert len(queries) == 0


def test_insert_prepares_values_not_of_their_fields_plain_type():
    """An integer field given a float, a bool or an enum, a text field given a lazy string:
    stored as bulk_create stores them (the field's own preparation), not refused."""
    customer = make_customer("kinds")
    change = StatusChange(customer=customer, group_id=gettext_lazy("lazy"), group_name="x",
                          from_status=True, to_status=Status.DOWN, at=timezone.now())  # fmt: skip
    change.to_status = 2.7  # an integer field given a float
    rows_insert([change])
    stored = StatusChange.objects.get(customer=customer)
    assert (stored.group_id, stored.from_status, stored.to_status) == ("lazy", 1, 2)


def test_inserted_rows_are_left_as_bulk_create_leaves_them():
    customer = make_customer("state")
    rows = [StatusChange(customer=customer, to_status=0, at=timezone.now()) for _ in range(3)]
    rows_insert(rows)
    assert all(not row._state.adding and row._state.db == "default" for row in rows)
    numbered = StatusChange(pk=987_654, customer=customer, to_status=1, at=timezone.now())
    rows_insert([numbered])  # a pk of its own: kept (bulk_create)
    assert StatusChange.objects.get(pk=987_654).to_status == 1


# --- rows_for_ids ----------------------------------------------------------------------------


def _states(ids):
    return AlertState.objects.filter(customer_id__in=ids, flapping=True).order_by("-pk")


def _states_locked(ids):
    return AlertState.objects.select_for_update().filter(customer_id__in=ids).order_by("pk")


def _some_states(customers: list[Customer]) -> None:
    now = timezone.now()
    rows_insert([
        AlertState(customer=c, group_id=f"g{i}", group_name=AWKWARD, status=i, streak=i,
                   observed_at=now - timedelta(seconds=i), confirmed={"1": i}, changes=[str(i)],
                   flapping=i % 2 == 0, failing_since=now if i else None)
        for c in customers for i in range(3)
    ])  # fmt: skip


def _fields(rows) -> list[list]:
    return [[getattr(row, f.attname) for f in AlertState._meta.concrete_fields] for row in rows]


def test_rows_for_ids_reads_what_the_orm_reads_with_the_sql_compiled_once():
    customers = [make_customer(f"read{i}") for i in range(4)]
    _some_states(customers)
    first, second = [c.pk for c in customers[:2]], [c.pk for c in customers[2:]]
    with CaptureQueriesContext(connection) as queries:
        got_first = rows_for_ids(_states, first + first[:1])  # a repeated id: as the ORM
        got_second = rows_for_ids(_states, second)  # as many ids: the same statement
    assert _fields(got_first) == _fields(_states(first)) and len(got_first) == 4
    assert _fields(got_second) == _fields(_states(second)) and len(got_second) == 4
    assert {s.customer_id for s in got_second} == set(second)  # the new ids, not the first's
    assert all(s.flapping for s in got_first + got_second)  # the constant kept
    assert [q["sql"] for q in queries][0].split("IN")[0] == queries[1]["sql"].split("IN")[0]
    assert len(queries) == 2
    assert all(not s._state.adding and s._state.db == "default" for s in got_second)
    three = rows_for_ids(_states, [c.pk for c in customers[:3]])  # another count: compiled
    assert _fields(three) == _fields(_states([c.pk for c in customers[:3]]))
    many = [c.pk for c in customers] + list(range(10**6, 10**6 + COMPILED_IDS))
    assert _fields(rows_for_ids(_states, many)) == _fields(_states(many))  # not kept: the ORM


def test_rows_for_ids_keeps_a_bounded_number_of_statements():
    before = len(db_module._COMPILED)
    for count in range(1, COMPILED_IDS + 40):
        rows_for_ids(_states, range(1, count + 1))
    assert len(db_module._COMPILED) - before <= COMPILED_IDS


class _Finder:
    def states(self, ids):
        return AlertState.objects.filter(customer_id__in=ids)


def test_rows_for_ids_of_no_ids_runs_no_query():
    with CaptureQueriesContext(connection) as queries:
        assert rows_for_ids(_states, []) == []
        assert rows_for_ids(_states, [None]) == []  # None left out, as the ORM does
        nothing = lambda ids: AlertState.objects.filter(customer_id__in=ids, group_id__in=[])  # noqa: E731
        assert rows_for_ids(nothing, [1, 2]) == []
    assert len(queries) == 0


def test_rows_for_ids_refuses_queries_it_could_not_reuse():
    kind = "flapping"
    with pytest.raises(ValueError, match="capture"):
        rows_for_ids(lambda ids: AlertState.objects.filter(customer_id__in=ids, **{kind: 1}), [1])
    with pytest.raises(ValueError, match="only them"):  # the ids unused
        rows_for_ids(lambda ids: AlertState.objects.filter(status=1), [1])
    with pytest.raises(ValueError, match="capture"):  # a bound method carries its self
        rows_for_ids(_Finder().states, [1])
    with pytest.raises(ValueError, match="plain model rows"):
        rows_for_ids(lambda ids: AlertState.objects.filter(pk__in=ids).select_related(), [1])
    with pytest.raises(ValueError, match="plain model rows"):
        rows_for_ids(lambda ids: AlertState.objects.filter(pk__in=ids).only("status"), [1])


@pytest.mark.django_db(transaction=True)
def test_rows_for_ids_locks_only_in_a_transaction_even_once_compiled():
    customer = make_customer("locked")
    _some_states([customer])
    with transaction.atomic():
        assert len(rows_for_ids(_states_locked, [customer.pk])) == 3
    if not connection.features.has_select_for_update:  # SQLite: no lock, as the ORM
        assert len(rows_for_ids(_states_locked, [customer.pk])) == 3
        return
    with pytest.raises(transaction.TransactionManagementError):
        rows_for_ids(_states_locked, [customer.pk])
