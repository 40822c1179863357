"""Writing many rows in a few statements without SQLAlchemy's per-row work: the sync's pages
and the daily reminders run (issue 14). What is stored is what SQLAlchemy itself would store:
each value goes through its column's own bind processing.

- PostgreSQL: one statement over the rows given as one JSON document of records, read back into
  typed columns by `json_to_recordset` (`unnested_insert`, `update_rows`).
- SQLite (in process): plain tuples converted column by column, a value repeated over all the
  rows converted once, then one executemany, or multi-row statements when rows come back
  (`insert_rows`, `update_rows`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from itertools import chain, repeat
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, BigInteger, bindparam, cast, func, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import column as named_column

from arbridge.sync.db import dialect_insert

_ORDER = "page_row"


def _json_value(value: Any) -> Any:
    """A bound value as JSON gives it to PostgreSQL: days and instants in ISO 8601."""
    if isinstance(value, date):
        return value.isoformat()
    return value


class _JSONColumn:
    """A JSON column's bind processing (`process`: SQLAlchemy's own, used one value at a time)
    for many rows at once: each document as `json.dumps` writes it, by one encoder for them
    all. `json.dumps` builds its C encoder anew for every value: two thirds of the cost of a
    small document, and the daily run writes two per message (issue 14)."""

    def __init__(self, process: Any) -> None:
        self.process = process

    def __call__(self, value: Any) -> Any:
        return self.process(value)

    def many(self, values: list[Any]) -> list[Any]:
        # json.dumps's own encoder, with its default settings (`JSONEncoder()`), made once
        # for these values: a fresh one, so no state is shared with another thread.
        default = _PLAIN
        encode = c_make_encoder(
            {},
            default.default,
            encode_basestring_ascii,
            default.indent,
            default.key_separator,
            default.item_separator,
            default.sort_keys,
            default.skipkeys,
            default.allow_nan,
        )
        join, process = "".join, self.process
        return [
            join(encode(value, 0)) if type(value) is dict or type(value) is list else process(value)
            for value in values
        ]


_PLAIN = json.JSONEncoder()


def _processor(column: Any, dialect: Any) -> Any:
    """The column's bind processor, as SQLAlchemy applies it: a JSON column stored as
    `json.dumps` writes it (no serializer of the engine's own, no string processing) can
    convert many values at once (`_JSONColumn`)."""
    type_ = column.type.dialect_impl(dialect)
    process = type_.bind_processor(dialect)
    if (
        isinstance(type_, JSON)
        and process is not None
        and c_make_encoder is not None
        and getattr(dialect, "_json_serializer", None) is None
        and type_._str_impl.bind_processor(dialect) is None
    ):
        return _JSONColumn(process)
    return process


def _converted(rows: list[dict[str, Any]], name: str, process: Any) -> Any:
    """A column's values through its bind processor: one value for all the rows (an instant,
    a status) converted once, days (a few hundred distinct in a page) once each, JSON
    documents by one encoder (`_JSONColumn`)."""
    values = list(map(itemgetter(name), rows))
    if process is None:
        return values
    if isinstance(process, _JSONColumn):
        return process.many(values)
    first = values[0]
    if not isinstance(first, dict | list) and values.count(first) == len(values):
        return repeat(process(first), len(values))
    if isinstance(first, date):
        converted = {day: process(day) for day in set(values)}
        return [converted[day] for day in values]
    return list(map(process, values))


def unnested_insert(session: Session, table: Any, rows: list[dict[str, Any]]) -> Any:
    """PostgreSQL: INSERT of the rows given as one JSON document of records, read back into
    typed columns by `json_to_recordset`. A short statement psycopg parses once and caches,
    where a VALUES list of a page's rows is some 17,000 placeholders parsed again in Python for
    every page, and an executemany is a statement per row (most of a page's time at 100k
    invoices, issue 14). One array per column was the same statement, but psycopg quotes each
    element of a text array in Python: a third of the sync's CPU. The values are the ones the
    column's own bind processing gives (a date or a timestamp in ISO form), so what is stored is
    the same."""
    dialect = session.get_bind().dialect
    names = list(rows[0])
    dumps = getattr(dialect, "_json_serializer", None) or json.dumps
    plain = [name for name in names if not isinstance(table.c[name].type, JSON)]
    ordered = [*plain, _ORDER]
    values: list[Any] = []
    for name in plain:
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        given = list(_converted(rows, name, process))
        # Only a column holding days or instants needs `_json_value` on each of its values
        # (1.2M calls at 30k invoices, issue 14); the kinds of a column's values are few.
        if any(issubclass(kind, date) for kind in set(map(type, given))):
            given = list(map(_json_value, given))
        values.append(given)
    values.append(range(1, len(rows) + 1))
    records = [dict(zip(ordered, row, strict=True)) for row in zip(*values, strict=True)]
    typed = [named_column(name, table.c[name].type) for name in plain]
    unnested = (
        func.json_to_recordset(cast(bindparam("u_rows", dumps(records)), JSON))
        .table_valued(*typed, named_column(_ORDER, BigInteger))
        .render_derived(with_types=True)
    )
    found, source = {name: unnested.c[name] for name in plain}, unnested
    for name in names:
        if name not in plain:
            # A JSON column goes in as one JSON array, its elements taken in order:
            # `json_array_elements` keeps each element's text as written, so the stored JSON is
            # the row's own serialisation (and None its JSON null, as SQLAlchemy stores it).
            document = cast(bindparam(f"u_{name}", dumps([r[name] for r in rows])), JSON)
            elements = (
                func.json_array_elements(document)
                .table_valued("value", with_ordinality="n")
                .render_derived()
                .alias(f"j_{name}")
            )
            source = source.join(elements, elements.c.n == unnested.c[_ORDER])
            found[name] = elements.c.value
    columns = select(*(found[name] for name in names)).select_from(source)
    return dialect_insert(session)(table).from_select(names, columns)


@lru_cache(maxsize=64)
def _sqlite_plan(
    dialect: Any,
    table: Any,
    names: tuple[str, ...],
    conflict: tuple[str, ...] | None,
    upsert: bool,
) -> tuple[str, tuple[tuple[int | None, Any, Any], ...]]:
    """SQLite: the INSERT SQLAlchemy compiles for rows of these columns (on a conflict over
    `conflict`: nothing, or with `upsert` the row's other columns written over the old), and
    for each of its placeholders the row's column (or the column's default) with the bind
    processor SQLAlchemy itself would apply. Compiled once per table and set of columns."""
    stmt = sqlite.insert(table)
    if conflict and upsert:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(conflict),
            set_={name: stmt.excluded[name] for name in names if name not in conflict},
        )
    elif conflict:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    compiled = stmt.compile(dialect=dialect, column_keys=list(names))
    plan = []
    for param in compiled.positiontup or ():
        column = table.c[param]
        process = _processor(column, dialect)
        if param in names:
            plan.append((names.index(param), None, process))
            continue
        default = column.default
        if default is None or not default.is_scalar:
            raise TypeError(f"{table.name}.{param} needs a value or a constant default")
        plan.append((None, default.arg if process is None else process(default.arg), None))
    return str(compiled), tuple(plan)


def insert_rows(
    session: Session,
    table: Any,
    rows: list[dict[str, Any]],
    conflict: Sequence[str] | None = None,
    upsert: bool = False,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """INSERT the rows (all with the same keys); on a conflict over the columns `conflict`,
    nothing (the row already there stays), or with `upsert` the row's other columns. Returns
    the `returning` columns of the rows written, in no promised order (match them by a key).

    SQLite: SQLAlchemy's own batched INSERT builds and processes a parameter dictionary per row:
    a quarter of a 100k-invoice sync's CPU (issue 14). With `returning`, one multi-row statement
    per batch of the driver's parameter limit; without, one executemany."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        stmt = unnested_insert(session, table, rows)
        if conflict and upsert:
            stmt = stmt.on_conflict_do_update(
                index_elements=list(conflict),
                set_={name: stmt.excluded[name] for name in rows[0] if name not in conflict},
            )
        elif conflict:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
        if not returning:
            session.connection().execute(stmt)
            return []
        stmt = stmt.returning(*(table.c[name] for name in returning))
        return list(session.connection().execute(stmt).tuples())
    dialect = session.get_bind().dialect
    names = tuple(rows[0])
    sql, plan = _sqlite_plan(dialect, table, names, tuple(conflict or ()) or None, upsert)
    columns: list[Any] = []
    for index, constant, process in plan:
        if index is None:
            columns.append(repeat(constant, len(rows)))
        else:
            columns.append(_converted(rows, names[index], process))
    tuples = list(zip(*columns, strict=False))
    connection = session.connection()
    if not returning:
        connection.exec_driver_sql(sql, tuples)
        return []
    width = len(plan)
    group = "(" + ", ".join(["?"] * width) + ")"
    per = max(1, dialect.insertmanyvalues_max_parameters // width)
    back = ", ".join(table.c[name].name for name in returning)
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(tuples), per):
        batch = tuples[start : start + per]
        many = sql.replace(group, ", ".join([group] * len(batch)), 1)
        flat = tuple(chain.from_iterable(batch))
        found += connection.exec_driver_sql(f"{many} RETURNING {back}", flat).tuples().all()
    return found


def update_rows(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """UPDATE each row by id with its values (all rows with the same keys): on PostgreSQL one
    statement over the rows given as one JSON document (`json_to_recordset`), where an
    executemany is a round trip per row; on SQLite, in process, an executemany of tuples."""
    if not rows:
        return
    names = [name for name in rows[0] if name != "id"]
    if session.get_bind().dialect.name == "postgresql":
        records = [
            {k: v.isoformat() if isinstance(v, date) else v for k, v in row.items()} for row in rows
        ]
        typed = [named_column(name, table.c[name].type) for name in ["id", *names]]
        given = (
            func.json_to_recordset(cast(bindparam("s_rows", json.dumps(records)), JSON))
            .table_valued(*typed)
            .render_derived(with_types=True)
        )
        session.connection().execute(
            update(table)
            .where(table.c.id == given.c.id)
            .values({name: given.c[name] for name in names})
        )
        return
    dialect = session.get_bind().dialect
    compiled = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values({name: bindparam(name) for name in names})
        .compile(dialect=dialect)
    )
    columns = []
    for param in compiled.positiontup or ():
        name = "id" if param == "b_id" else param
        columns.append(_converted(rows, name, _processor(table.c[name], dialect)))
    session.connection().exec_driver_sql(str(compiled), list(zip(*columns, strict=False)))
