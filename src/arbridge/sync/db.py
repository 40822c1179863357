"""Engines, sessions and migrations. SQLite is the embedded default; PostgreSQL runs in production."""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Engine,
    Result,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    literal_column,
    select,
    table,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from arbridge.errors import ConfigError, NotInitialised

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"  # where Alembic keeps the database's migration
# Pooled PostgreSQL connections are replaced after this long (servers and proxies such as
# PgBouncer close idle ones; 5 minutes is under their usual timeouts).
POOL_RECYCLE_SECONDS = 300
log = logging.getLogger(__name__)
T = TypeVar("T")


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "checkin")
        def _durable_again(dbapi_conn: Any, record: Any) -> None:
            if record.info.pop(_RELAXED, False):
                dbapi_conn.execute("PRAGMA synchronous=FULL")
                dbapi_conn.execute("PRAGMA wal_autocheckpoint=1000")
            if record.info.pop(_LARGE_CACHE, False):
                dbapi_conn.execute(f"PRAGMA cache_size={DEFAULT_CACHE_KIB}")

        return engine
    # No server-side prepared statements: psycopg prepares a statement after its fifth run, and
    # PostgreSQL then plans it once for any parameters (a generic plan). For the sync's lookups
    # of up to 1,000 ids that plan checks every row of the company against the whole list:
    # 2.7 s a page instead of 54 ms (issue 14's measurement).
    connect_args = {"prepare_threshold": None, **kwargs.pop("connect_args", {})}
    # No pre-ping: it is a round trip on every checkout (one of five per webhook, issue 14).
    # Connections are replaced after POOL_RECYCLE_SECONDS instead, before a server or proxy
    # closes them as idle, and work that is safe to repeat (storing a webhook) runs again once
    # on a fresh connection when the pooled one turns out dead (`retry_on_disconnect`).
    kwargs.setdefault("pool_recycle", POOL_RECYCLE_SECONDS)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    # No JIT compilation: PostgreSQL compiles any query the planner costs above
    # jit_above_cost to machine code first, as a query over a big company's invoices is, and a
    # page's query runs once and briefly. The forecast week's invoices list at 1M invoices:
    # 318 ms, of which 208 ms compiling (issue 14). One statement per new connection.
    @event.listens_for(engine, "connect")
    def _no_jit(dbapi_conn: Any, _record: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        try:
            dbapi_conn.execute("SET jit = off")
        finally:
            dbapi_conn.autocommit = autocommit

    return engine


def retry_on_disconnect(work: Callable[[], T]) -> T:
    """Run `work`; if its pooled connection turns out dead (the database restarted, or closed
    it), run it once more: the pool has dropped the dead connection and hands out a fresh one.
    Only for work that is safe to repeat, as a transaction rolled back and tried again is."""
    try:
        return work()
    except DBAPIError as e:
        if not e.connection_invalidated:
            raise
        log.warning("database connection lost (%s); trying once more", type(e.orig).__name__)
        return work()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    from arbridge.sync.insight_cache import watch  # it imports this module

    factory = sessionmaker(engine, expire_on_commit=False)
    watch(factory)  # every write to what the insight reads bumps the company's version
    return factory


def core_rows(session: Session, statement: Any) -> Result[Any]:
    """The rows of a read as plain Core rows, on the session's connection: the ORM's own result
    handling cost more than the query for the tens of thousands of rows a daily run reads
    (issue 14). The session's pending changes are flushed first, as `Session.execute` would."""
    if session.autoflush:
        session.flush()
    return session.connection().execute(statement)


R = TypeVar("R", bound=tuple[Any, ...])


def named_rows(session: Session, statement: Any, record: type[R]) -> list[R]:
    """The rows of a read (`core_rows`) as `record`s: a NamedTuple whose fields are the
    statement's columns, in their order (checked). A Core row's attribute read by name costs
    about 0.57 µs (SQLAlchemy 2.0 looks the name up on every read), a named tuple's 0.02 µs,
    and a daily run reads some forty a candidate invoice (issue 14)."""
    result = core_rows(session, statement)
    fields = getattr(record, "_fields", None)
    if fields is None or tuple(result.keys()) != fields:
        raise TypeError(f"{record!r} does not name the columns {tuple(result.keys())}")
    return list(map(record._make, result))  # type: ignore[attr-defined]


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back (and re-raise) on any error."""
    with factory() as session, session.begin():
        yield session


_RELAXED = "arbridge_relaxed_sync"
# SQLite's page cache (negative: KiB), its default and while a sync writes pages. The default
# 2 MB holds a fraction of the invoices' indexes at 100k invoices, and each row a page inserts
# lands somewhere else in each: reading their pages back from the OS again and again (issue 14).
DEFAULT_CACHE_KIB = -2000
SYNC_CACHE_KIB = -32768


def relax_durability(session: Session) -> None:
    """SQLite: commit this transaction without waiting for the disk (WAL `synchronous=NORMAL`)
    and without copying the log back into the database file until it holds 200 MB, for
    work the next run redoes by itself: sync pages and the cursor that covers them. A power cut
    may lose the last pages committed, together with their cursor, never half a page (WAL
    keeps the file consistent either way; a crash of the process loses nothing). Checkpointing
    at each of a 100k-invoice sync's 160 page commits copied the same index pages again and
    again: a fifth of its time (issue 14); `checkpoint` does it once at the end. A
    larger page cache too (SYNC_CACHE_KIB). The connection is as before when it goes back to the
    pool. Call it before the first write.

    PostgreSQL: the same promise, `synchronous_commit = off` for this transaction alone (`SET
    LOCAL`): the commit returns before its log is on disk, and a crash of the server within
    a fraction of a second after it may lose the transaction whole, never part of it. A
    transaction that read its rows and then commits durably (a job claiming an outbox row)
    makes it durable too: the log is flushed in order."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        return
    if session.get_bind().dialect.name != "sqlite":
        return
    connection = session.connection()
    connection.exec_driver_sql("PRAGMA synchronous=NORMAL")
    connection.exec_driver_sql("PRAGMA wal_autocheckpoint=50000")
    connection.info[_RELAXED] = True
    large_cache(session)


# SQLite: a sync commits its pages together until they hold this many records. Each commit
# writes every database page its transaction changed to the write-ahead log, and a page of
# 1,000 invoices lands all over each of the invoices' indexes: committing each page alone wrote
# the same index pages again and again (a 100k-invoice sync: 13.5 s, 10.5 s in tens of pages,
# issue 14). The pages are read from the ledger before their transaction begins, so SQLite's one
# write lock is held while they are written (under a second for 10,000 invoices), never across
# the ledger's API calls; other writers wait it out (busy_timeout). PostgreSQL keeps a page a
# commit: its commits write only the log records, and the planner's statistics taken during a
# load must see committed rows.
SQLITE_RECORDS_PER_COMMIT = 10_000


def records_per_commit(factory: sessionmaker[Session]) -> int:
    """How many records a sync commits together, at least (a page is never split): 1 on
    PostgreSQL (each page alone), SQLITE_RECORDS_PER_COMMIT on SQLite."""
    with factory() as session:
        sqlite_ = session.get_bind().dialect.name == "sqlite"
    return SQLITE_RECORDS_PER_COMMIT if sqlite_ else 1


_LARGE_CACHE = "arbridge_large_cache"


def large_cache(session: Session) -> None:
    """SQLite: the larger page cache of a sync (SYNC_CACHE_KIB) for this transaction, durability
    unchanged (every commit still waits for the disk), for work that reads and writes many
    rows across the invoices' and reminders' indexes: the daily reminders run, whose pages the
    default 2 MB cache read back from the OS again and again (issue 14). The connection is as
    before when it goes back to the pool. PostgreSQL: nothing changes."""
    if session.get_bind().dialect.name != "sqlite":
        return
    connection = session.connection()
    connection.exec_driver_sql(f"PRAGMA cache_size={SYNC_CACHE_KIB}")
    connection.info[_LARGE_CACHE] = True


def checkpoint(factory: sessionmaker[Session]) -> None:
    """SQLite: copy the write-ahead log into the database file now (after relaxed writes), without
    waiting for readers; what a reader still holds is copied by the next commit's checkpoint."""
    with factory() as session:
        if session.get_bind().dialect.name == "sqlite":
            session.connection().exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            session.commit()


def dialect_insert(session: Session) -> Any:
    """INSERT with the dialect's ON CONFLICT support (SQLite and PostgreSQL spell it alike)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def among(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values` for lookups of many ids (strings or integers) in one statement: a sync
    page's, or every invoice a day's reminders look at. On PostgreSQL the list is one array
    parameter (`column = ANY(...)`): a 1,000-item IN list is 1,000 placeholders in a statement
    too long for psycopg's parse cache, parsed again in Python on every run (most of a page's
    time at 100k invoices, issue 14). On SQLite it is one JSON array read by `json_each`, so a
    list longer than SQLite's limit on placeholders needs no chunks. The planner uses the same
    index either way."""
    wanted = list(values)
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, wanted, type_=postgresql.ARRAY(column.type)))
    listed = func.json_each(bindparam(None, json.dumps(wanted))).table_valued("value")
    return column.in_(select(listed.c.value))


def alembic_config(engine: Engine) -> Config:
    # Alembic (and Mako with it) is imported only to migrate: a fifth of every command's start.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


_REVISION = re.compile(r"""^(down_revision|revision) = (?:"([^"]+)"|None)$""", re.MULTILINE)


@functools.cache
def head_revision() -> str:
    """The newest migration: the one no other names as its `down_revision`. Read from the
    scripts' text; Alembic's own ScriptDirectory executes every script to find it (200 ms of
    each command's start here). tests/integration/test_migrations.py checks both agree. Read
    once per process: every Runtime.open asks, and the scripts change only with a new install,
    which needs a restart anyway."""
    revisions, parents = set(), set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        found = dict(_REVISION.findall(script.read_text(encoding="utf-8")))
        revisions.add(found["revision"])
        parents.add(found.get("down_revision") or None)
    heads = revisions - parents
    assert len(heads) == 1, heads
    return heads.pop()


def sqlite_path(engine: Engine) -> Path | None:
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return Path(engine.url.database)


def current_revision(engine: Engine) -> str | None:
    """The database's migration, or None for a database arbridge has not initialised."""
    path = sqlite_path(engine)
    if path is not None and not path.exists():
        return None  # don't let a mere check create an empty database file
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None
            return conn.scalar(
                select(literal_column("version_num")).select_from(table(VERSION_TABLE))
            )
    except OperationalError as e:
        reason = " ".join(str(e.orig).split())  # psycopg's message spans lines
        raise ConfigError(f"cannot open the database at {engine.url!r}: {reason}") from e


def upgrade(engine: Engine) -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def is_empty(engine: Engine) -> bool:
    with engine.connect() as conn:
        return not inspect(conn).get_table_names()


def require_current(engine: Engine) -> None:
    """Refuse to run against a database that `arbridge init` has not created or migrated."""
    current = current_revision(engine)
    if current is None:
        raise NotInitialised("the database has no arbridge tables yet: run `arbridge init`")
    if current != head_revision():
        raise NotInitialised(
            f"the database is at migration {current}, this arbridge needs {head_revision()}: "
            "run `arbridge init --upgrade`"
        )
