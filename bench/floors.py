"""Floors the benchmarks measure in their own runs (issue 14): writing rows the cheapest way the
database takes them, into the tables arbridge keeps them in."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, insert


def bare_insert(c: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Rows (dicts of the same columns) into `table`: PostgreSQL's COPY, SQLite's executemany
    INSERT. Every index, constraint and foreign key of the table does its work as for any write."""
    if not rows:
        return
    if c.dialect.name != "postgresql":
        c.execute(insert(table), rows)
        return
    names = list(rows[0])
    cursor = c.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(
                [json.dumps(v) if isinstance(v, dict | list) else v for v in row.values()]
            )
