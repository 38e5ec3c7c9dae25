"""Small database helpers shared by the apps."""

import contextlib
import dataclasses
import inspect
import json
import operator
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import IntegrityError, connections, models, router, transaction
from django.db.backends.utils import CursorDebugWrapper
from django.db.models.query import ModelIterable

PLAIN_UPDATES = 3
"""Rows whose changes are alike (the same fields set to the same values) are written with one
plain `UPDATE ... WHERE id IN (...)`; up to this many such sets are written so. Beyond it, one
UPDATE of the changed fields from a VALUES list on PostgreSQL (`_update_from_values`), else
Django's bulk_update. Either way the number of queries does not grow with the number of rows
(PERF-02)."""

BATCH_ROWS = 500
"""Rows per statement of scattered changes (PostgreSQL takes at most 65,535 parameters)."""


def rows_write(changes: Sequence[tuple[models.Model, dict[str, Any]]]) -> int:
    """Write each row's changed fields ({name: new value}, already set on the row); rows of
    one model. Returns the number of queries run."""
    changes = [(row, values) for row, values in changes if values]
    for row, values in changes:  # bulk_update reads the rows: they must hold the values
        if any(getattr(row, name) != value for name, value in values.items()):
            raise ValueError(f"rows_write: set {sorted(values)} on the {type(row).__name__}")
    if not changes:
        return 0
    manager = type(changes[0][0])._default_manager
    alike: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    for row, values in changes:
        alike.setdefault(_alike_key(values), (values, []))[1].append(row.pk)
    if len(alike) <= PLAIN_UPDATES:
        for values, pks in alike.values():
            manager.filter(pk__in=pks).update(**values)
        return len(alike)
    fields = sorted({name for _, values in changes for name in values})
    rows = [row for row, _ in changes]
    if connections[router.db_for_write(manager.model)].vendor != "postgresql":
        manager.bulk_update(rows, fields, batch_size=BATCH_ROWS)
        return 1
    for start in range(0, len(rows), BATCH_ROWS):
        _update_from_values(manager, rows[start : start + BATCH_ROWS], fields)
    return -(-len(rows) // BATCH_ROWS)


AS_HELD = {
    models.AutoField: int, models.BigAutoField: int, models.SmallAutoField: int,
    models.IntegerField: int, models.SmallIntegerField: int, models.BigIntegerField: int,
    models.PositiveIntegerField: int, models.PositiveSmallIntegerField: int,
    models.PositiveBigIntegerField: int, models.CharField: str, models.TextField: str,
    models.BooleanField: bool,
}  # fmt: skip
"""Fields (these very classes, not subclasses, which may prepare values their own way) whose
values COPY takes as the row holds them when they are of this Python type or None; a value of
another type (a float, a lazy string, an enum), and every other field, go through the field's
own preparation, as bulk_create's would (JSON, durations, times with their time-zone check)."""


def rows_insert(rows: Sequence[models.Model], *, ignore_conflicts: bool = False) -> None:
    """Insert new rows of one model, as bulk_create would but for their pk, which stays None
    (the database numbers them). On PostgreSQL with one COPY: bulk_create's statement cost a
    first refresh (every group, status change and alert state new) about a third of its CPU,
    in Django's compilation and psycopg's quoting of every value into the statement.
    `ignore_conflicts`: rows that clash with a unique constraint are left out, as
    bulk_create(ignore_conflicts=True) does (the COPY runs in a savepoint; on a clash,
    bulk_create does the insert). Elsewhere, or when a row has its pk set: bulk_create."""
    if not rows:
        return
    model = type(rows[0])
    db = router.db_for_write(model)
    connection = connections[db]
    fields = _copy_fields(model)
    if connection.vendor != "postgresql" or fields is None or any(r.pk is not None for r in rows):
        model._default_manager.bulk_create(
            rows, batch_size=BATCH_ROWS, ignore_conflicts=ignore_conflicts
        )
        return
    if ignore_conflicts:
        try:
            with transaction.atomic(using=db):
                _copy(connection, rows, fields)
        except IntegrityError:  # a row inserted meanwhile: insert the others
            model._default_manager.bulk_create(rows, batch_size=BATCH_ROWS, ignore_conflicts=True)
            return
    else:
        _copy(connection, rows, fields)
    for row in rows:  # as bulk_create leaves them
        row._state.adding, row._state.db = False, db


def _copy_fields(model) -> list[models.Field] | None:
    """The columns a COPY of new rows fills (all but a generated primary key); None when a
    field leaves its value to the database (db_default, generated)."""
    fields = []
    for field in model._meta.concrete_fields:
        if field.primary_key and isinstance(field, models.AutoField):
            continue
        if field.db_default is not models.NOT_PROVIDED or field.generated:
            return None
        fields.append(field)
    return fields


def _held_type(field: models.Field) -> type | None:
    """The Python type a field's values go to COPY as held in (None: always prepared)."""
    if type(field) is models.ForeignKey:
        field = field.target_field
    return AS_HELD.get(type(field))


def _copy(connection, rows: Sequence[models.Model], fields: list[models.Field]) -> None:
    """COPY the rows in, through Django's cursor: its execute wrappers, its query log (a
    debug cursor records the statement, not the values) and its database errors."""
    held = [field for field in fields if _held_type(field)]
    fields = held + [field for field in fields if field not in held]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    sql = f"COPY {quote(rows[0]._meta.db_table)} ({columns}) FROM STDIN"
    held_values = _held_values(held, connection)
    prepared = [_prepared(field, connection) for field in fields[len(held) :]]

    def execute(sql, params, many, context):
        connection.validate_no_broken_transaction()
        with connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row((*held_values(row), *[value(row) for value in prepared]))

    with connection.cursor() as cursor:
        logged = isinstance(cursor, CursorDebugWrapper)
        with cursor.debug_sql(sql) if logged else contextlib.nullcontext():
            cursor._execute_with_wrappers(sql, None, many=False, executor=execute)


def _held_values(held: list[models.Field], connection):
    """A row's values of the `held` fields: as held when each is of its field's Python type
    (or None), else each through its field's preparation."""
    names = [field.attname for field in held]
    kinds = [_held_type(field) for field in held]
    prepares = [field.get_db_prep_save for field in held]
    get = (  # attrgetter of one name gives the value, not a tuple
        operator.attrgetter(*names) if len(names) > 1
        else lambda row: tuple(getattr(row, name) for name in names)
    )  # fmt: skip

    def values(row) -> tuple:
        found = get(row)
        if all(type(v) is kind or v is None for v, kind in zip(found, kinds, strict=True)):
            return found
        return tuple(prepare(v, connection) for prepare, v in zip(prepares, found, strict=True))

    return values


def _prepared(field: models.Field, connection):
    """A row's value of `field` as the field prepares it for the database; an aware datetime
    (what the apps hold) as held, which is what that preparation gives on PostgreSQL."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return lambda row: field.get_db_prep_save(field.pre_save(row, True), connection)
    attname, prepare = field.attname, field.get_db_prep_save
    if isinstance(field, models.DateTimeField):

        def value(row):
            held = getattr(row, attname)
            aware = isinstance(held, datetime) and held.utcoffset() is not None
            return held if aware else prepare(held, connection)

        return value
    return lambda row: prepare(getattr(row, attname), connection)


def _update_from_values(manager, rows: list[models.Model], names: list[str]) -> None:
    """bulk_update's effect (the rows' current values of these fields) in one
    `UPDATE ... FROM (VALUES ...)`: Django's bulk_update builds a CASE expression per field
    and row, whose compilation cost a batch's store several times the statement's own time."""
    meta, connection = manager.model._meta, connections[router.db_for_write(manager.model)]
    fields = [meta.pk] + [meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    casts = ", ".join(f"%s::{field.cast_db_type(connection)}" for field in fields)
    values = ", ".join(f"({casts})" for _ in rows)
    params = [
        field.get_db_prep_save(getattr(row, field.attname), connection)
        for row in rows
        for field in fields
    ]
    columns = ", ".join(quote(field.column) for field in fields)
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields[1:])
    pk = quote(meta.pk.column)
    # Names are the model's own, quoted by the backend; every value is a parameter.
    sql = (
        f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "  # noqa: S608
        f"FROM (VALUES {values}) AS v ({columns}) WHERE t.{pk} = v.{pk}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _alike_key(values: dict[str, Any]) -> Any:
    """Equal for equal changes: the items themselves when hashable (json.dumps of each row's
    changes cost 3 % of a refresh), else their JSON."""
    key = tuple(sorted(values.items()))
    try:
        hash(key)
    except TypeError:  # a JSON field's list or dict
        return json.dumps(values, sort_keys=True, default=str)
    return key


@dataclasses.dataclass(frozen=True)
class _Compiled:
    probe: models.QuerySet = dataclasses.field(repr=False)  # never run; its `db`: where to
    db: str
    sql: str
    params: tuple
    slots: tuple[tuple[int, int], ...]  # (position in params, index in the ids)
    model: type[models.Model]
    attnames: tuple[str, ...]
    converters: dict
    locks: bool


_COMPILED: dict[tuple, _Compiled] = {}
COMPILED_IDS = 128
"""rows_for_ids keeps the SQL of up to this many ids (a refresh batch; a store chunk of the
MSP-wide refresh is 100); a longer list is compiled each time, as the ORM would."""


def rows_for_ids(query: Callable[[list], models.QuerySet], ids: Collection[Any]) -> list:
    """`list(query(ids))`, with the queryset's SQL compiled once per database and number of
    ids and then run with other ids: Django's compilation of a select of a model's columns
    costs more than the database's answer (eight customers: 1.1 ms of 1.7), and a refresh
    batch runs several such selects. `query` builds a queryset of model rows (no
    select_related, annotations, deferred fields or prefetches) that differs only by `ids`,
    which it uses in `__in` lookups; it must not capture other values (a closure is refused),
    since every call with as many ids runs the first call's SQL: a method is refused too, and a
    module global or setting it reads is read once. None among the ids is left out, as the ORM
    does; ids go to the database as given (integers here)."""
    ids = [i for i in dict.fromkeys(ids) if i is not None]  # as the ORM sends them
    if not ids:
        return []  # the ORM runs no query either
    if inspect.ismethod(query) or query.__closure__ or query.__defaults__ or query.__kwdefaults__:
        raise ValueError("rows_for_ids: the query must not capture values")
    if len(ids) > COMPILED_IDS:
        return list(query(ids))
    key = (query.__module__, query.__qualname__, query.__code__, len(ids))
    compiled = _COMPILED.get(key)
    if compiled is None or compiled.probe.db != compiled.db:  # new, or routed elsewhere now
        try:
            compiled = _COMPILED[key] = _compile(query, len(ids))
        except EmptyResultSet:  # a constant that matches nothing: no query, as the ORM
            return []
    return _run(compiled, ids)


def _probe(count: int, round_: int) -> list[int]:
    """Ids no row has (negative), different for each probe: the parameters that differ
    between two probes' statements are the ids."""
    return list(range(-round_ * count, -(round_ - 1) * count))


def _compile(query: Callable[[list], models.QuerySet], count: int) -> _Compiled:
    first, second = query(_probe(count, 1)), query(_probe(count, 2))
    plain = (
        first._iterable_class is ModelIterable and not first._prefetch_related_lookups
        and not first.query.select_related and not first.query.annotation_select
        and not first.query.extra_select and first.query.deferred_loading == (frozenset(), True)
        and not first._known_related_objects
    )  # fmt: skip
    if not plain:
        raise ValueError("rows_for_ids: a queryset of plain model rows only")
    compiler = first.query.get_compiler(using=first.db)
    sql, params = compiler.as_sql()
    sql2, params2 = second.query.get_compiler(using=first.db).as_sql()
    index = {value: i for i, value in enumerate(_probe(count, 1))}
    pairs = enumerate(zip(params, params2, strict=True))
    slots = tuple((i, index.get(a, -1)) for i, (a, b) in pairs if a != b)
    if sql != sql2 or sorted({k for _, k in slots}) != list(range(count)):
        raise ValueError("rows_for_ids: the query must use the ids, and only them, in `__in`")
    columns = [column for column, _, _ in compiler.select]
    if compiler.klass_info["select_fields"] != list(range(len(columns))):
        raise ValueError("rows_for_ids: a queryset of plain model rows only")
    return _Compiled(
        probe=first, db=first.db, sql=sql, params=tuple(params), slots=slots, model=first.model,
        attnames=tuple(column.target.attname for column in columns),
        converters=compiler.get_converters(columns), locks=bool(first.query.select_for_update),
    )  # fmt: skip


def _run(compiled: _Compiled, ids: list) -> list:
    db = compiled.db
    connection = connections[db]
    locking = compiled.locks and connection.features.has_select_for_update
    if locking and connection.get_autocommit():  # as the ORM checks
        raise transaction.TransactionManagementError(
            "select_for_update cannot be used outside of a transaction."
        )
    params = list(compiled.params)
    for position, index in compiled.slots:
        params[position] = ids[index]
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, params)
        rows = cursor.fetchall()
    from_db, names = compiled.model.from_db, compiled.attnames
    if not compiled.converters:
        return [from_db(db, names, row) for row in rows]
    return [from_db(db, names, _converted(row, compiled.converters, connection)) for row in rows]


def _converted(row: tuple, converters: dict, connection) -> list:
    """The row's values through the backend's and the fields' converters, as the ORM's."""
    row = list(row)
    for position, (functions, expression) in converters.items():
        value = row[position]
        for function in functions:
            value = function(value, expression, connection)
        row[position] = value
    return row


def changed_fields(obj: models.Model, values: dict[str, Any]) -> dict[str, Any]:
    """Set on `obj` the values that differ from what it holds; those values."""
    diff = {name: value for name, value in values.items() if getattr(obj, name) != value}
    for name, value in diff.items():
        setattr(obj, name, value)
    return diff
