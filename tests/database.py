"""Test databases that are built once per test process and copied for each test.

Running every Alembic migration costs about half a second, and building the 300-invoice demo
company about as much again; a suite of several hundred tests paid both for every test. Here
each test process migrates once (SQLite: a template file that each test copies; PostgreSQL: a
schema of the process's own, emptied between tests) and builds the demo company once, in a
database of its own; a test that asks for the demo company gets a row-for-row copy of it.

The copy is exact only when the test's database is exactly what the build started from (freshly
migrated, nothing written but the key check) and the test's clock and keys are the build's.
`demo_snapshot_fits` checks that; when it does not hold, the caller builds the demo the slow way.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, Table, exists, literal, or_, select

from arbridge.sync import db
from arbridge.sync.model import Base, InstanceMeta
from arbridge.sync.store import KEY_CHECK

DEMO_LEDGERS = "demo-ledgers"


def migrate_sqlite_template(path: Path) -> Path:
    """Migrate a new SQLite file at `path` to head and leave it closed, with nothing in its WAL."""
    engine = db.make_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def copy_sqlite(template: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)


_emptied = itertools.count(1)
VACUUM_EVERY = 10  # tests: about 35 ms a VACUUM


def empty_postgres(engine: Engine) -> None:
    """Delete every row and restart every sequence in the connection's schema.

    The effect of `TRUNCATE ... RESTART IDENTITY`, for a tenth of the time: truncating some thirty
    tables, nearly all of them empty, costs about half a second per test; this costs 20 ms. One
    statement, so one round trip to a server that four test runs share.
    """
    deletes = "".join(f'DELETE FROM "{t.name}"; ' for t in reversed(_tables()))  # noqa: S608
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"""DO $$ DECLARE seq text; BEGIN {deletes}
            FOR seq IN SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()
            LOOP EXECUTE 'ALTER SEQUENCE ' || quote_ident(seq) || ' RESTART'; END LOOP; END $$"""  # noqa: S608
        )
    if next(_emptied) % VACUUM_EVERY == 0:
        vacuum_postgres(engine)


def vacuum_postgres(engine: Engine) -> None:
    """VACUUM the schema's tables: what autovacuum would do, which may be off on the test server.

    Every test deletes what the one before wrote, so each table's dead rows (and their index
    entries) pile up over a run's thousand tests. Scans then walk them, and the planner, which
    sizes a table by its pages, plans differently as they grow: the forecast's query took 10 s
    late in a CI run (nested loops over every row), well under a second alone. A whole
    PostgreSQL run went from 617 to 479 s with this.
    """
    names = ", ".join(f'"{t.name}"' for t in _tables())
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"VACUUM {names}")


@dataclass(frozen=True)
class DemoSnapshot:
    """The demo company as `demo.prepare` left it, in a database nobody else writes to."""

    instance_path: Path  # holds the demo ledger file the company syncs from
    database_url: str
    schema: str | None  # the PostgreSQL schema, None on SQLite
    slug: str
    now: datetime  # the clock it was built with
    encryption_keys: tuple[str, ...]
    login_link_minutes: int


def _tables() -> list[Table]:
    return list(Base.metadata.sorted_tables)


def _copied_tables() -> list[Table]:
    """The tables a snapshot's rows are copied into: not those the database's own triggers
    keep (`open_invoice_days`), which the copied invoices fill in as they arrive."""
    return [t for t in _tables() if not t.info.get("kept_by_triggers")]


def is_pristine(engine: Engine) -> bool:
    """Freshly migrated: no rows anywhere except the key check `Runtime.open` writes."""
    found = []
    for table in _tables():
        query = select(literal(1)).select_from(table)
        if table.name == InstanceMeta.__tablename__:
            query = query.where(table.c.key != KEY_CHECK)
        found.append(exists(query))
    with engine.connect() as conn:
        return not conn.scalar(select(or_(*found)))


def demo_snapshot_fits(snapshot: DemoSnapshot, rt) -> bool:
    return (
        rt.clock.now() == snapshot.now
        and tuple(rt.settings.encryption_keys) == snapshot.encryption_keys
        and rt.settings.login_link_minutes == snapshot.login_link_minutes
        and not (rt.settings.instance_path / DEMO_LEDGERS).exists()
        and is_pristine(rt.engine)
    )


def _columns(table: Table) -> str:
    return ", ".join(f'"{c.name}"' for c in table.columns)


def _copy_rows_sql(table: Table, source: str) -> str:
    cols = _columns(table)
    # Names come from our own metadata, never from input.
    sql = f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM {source}."{table.name}"'  # noqa: S608
    if table.name == InstanceMeta.__tablename__:
        # Keep the test's own key check: both decrypt with the same keys.
        sql += f' WHERE "key" NOT IN (SELECT "key" FROM "{table.name}")'  # noqa: S608
    return sql


def restore_demo(snapshot: DemoSnapshot, rt) -> None:
    """Copy every row of the snapshot into the test's (pristine) database, and its ledger file."""
    shutil.copytree(snapshot.instance_path / DEMO_LEDGERS, rt.settings.instance_path / DEMO_LEDGERS)
    if snapshot.schema is None:
        _restore_sqlite(snapshot, rt.engine)
    else:
        _restore_postgres(snapshot, rt.engine)


def _restore_sqlite(snapshot: DemoSnapshot, engine: Engine) -> None:
    path = snapshot.database_url.removeprefix("sqlite:///")
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        # ATTACH is refused inside a transaction; pysqlite opens one only before DML.
        raw.commit()
        cur.execute("ATTACH DATABASE ? AS snapshot", (path,))
        try:
            for table in _copied_tables():
                cur.execute(_copy_rows_sql(table, "snapshot"))
            raw.commit()
        finally:
            raw.rollback()
            cur.execute("DETACH DATABASE snapshot")
        cur.close()
    finally:
        raw.close()


def _restore_postgres(snapshot: DemoSnapshot, engine: Engine) -> None:
    source = f'"{snapshot.schema}"'
    inserts = "".join(f"{_copy_rows_sql(table, source)}; " for table in _copied_tables())
    # Sequences carry on exactly where the snapshot's did. One statement, one round trip.
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"""DO $$ DECLARE seq record; BEGIN {inserts}
            FOR seq IN SELECT sequencename, last_value FROM pg_sequences
                WHERE schemaname = '{snapshot.schema}' AND last_value IS NOT NULL
            LOOP PERFORM setval(quote_ident(seq.sequencename)::regclass, seq.last_value, true);
            END LOOP; END $$"""  # noqa: S608
        )
