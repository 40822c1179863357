"""The sync runner, the only I/O in sync/: fetch a page, map it, upsert it, save the cursor.

Pages are committed together with the cursor that covers them (each page alone on PostgreSQL,
pages of at least `db.SQLITE_RECORDS_PER_COMMIT` records together on SQLite), so the cursor moves
only after its data is committed, and a crash re-fetches at most those pages. Upserts key on
(company_id, source, source_id), so running a sync again changes nothing. A record that cannot
be mapped becomes a SyncError row and the sync goes on. Saving a page is `page_writer`'s job;
`ledger_lag` keeps a reading older than a write-back from undoing a payment collected here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import Clock
from arbridge.connectors.base import ENTITIES, Entity, LedgerConnector, Page, SourceRecord
from arbridge.errors import ArbridgeError, MappingError, RateLimited
from arbridge.sync import heap
from arbridge.sync.activity import log_activity
from arbridge.sync.db import (
    checkpoint,
    dialect_insert,
    records_per_commit,
    relax_durability,
    transaction,
)
from arbridge.sync.ledger_lag import WrittenBack, written_back
from arbridge.sync.model import Connection, SyncCursor, SyncError
from arbridge.sync.page_writer import PageWriter
from arbridge.sync.records import Deleted, Mapped
from arbridge.wording import counted

log = logging.getLogger(__name__)

Progress = Callable[[Entity, int, int | None], None]


@dataclass
class SyncResult:
    upserted: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    pages: int = 0

    def __str__(self) -> str:
        """'40 customers, 300 invoices written; 2 invoices deleted; 5 pages' (the log line a
        demo's console shows among its progress lines; it printed the dataclass)."""

        def each(counts: dict[str, int]) -> str:
            return ", ".join(
                counted(n, entity.rstrip("s").replace("_", " "))
                for entity, n in counts.items()
                if n
            )

        parts = [f"{each(self.upserted)} written" if any(self.upserted.values()) else "nothing new"]
        if any(self.deleted.values()):
            parts.append(f"{each(self.deleted)} deleted")
        if self.errors:
            parts.append(counted(self.errors, "record") + " not read (see the sync errors)")
        parts.append(counted(self.pages, "page"))
        return "; ".join(parts)


# (entity, source id, deleted?, raw payload) -> a record of the receivables model, or Deleted.
Mapper = Callable[[str, str, bool, Any], Mapped]

# Each ledger provider's mapper, by source name. Filled by the provider registry
# (arbridge.providers), which sits above sync: the runner knows no provider by name.
_MAPPERS: dict[str, Mapper] = {}


def register_mapper(source: str, mapper: Mapper) -> None:
    _MAPPERS[source] = mapper


def unregister_mapper(source: str) -> None:
    _MAPPERS.pop(source, None)


def mapper_for(source: str) -> Mapper:
    try:
        return _MAPPERS[source]
    except KeyError:
        raise ValueError(f"no mapper for source {source!r}") from None


def apply_records(
    session: Session,
    conn: Connection,
    entity: Entity,
    records: Sequence[SourceRecord],
    clock: Clock,
    result: SyncResult | None = None,
) -> SyncResult:
    """Save records of one entity a provider learnt of outside a sync (a webhook's deletion, a
    record fetched by id), in the caller's transaction, exactly as a sync page would be saved.
    The cursor does not move: the next sync still reads everything after it."""
    result = result if result is not None else SyncResult()
    _apply_page(session, conn, Page(entity, records, None), clock, result)
    return result


def _apply_page(
    session: Session,
    conn: Connection,
    page: Page,
    clock: Clock,
    result: SyncResult,
    before: WrittenBack | None = None,
) -> set[str]:
    """Save one page; returns the invoices to read again (their reading predates a write-back)."""
    writer = PageWriter(session, conn, clock, before)
    mapper = mapper_for(conn.provider)
    mapped: list[Any] = []
    deleted: list[str] = []
    failures: list[tuple[str, Any, str]] = []
    for rec in page.records:
        try:
            out = mapper(page.entity, rec.source_id, rec.deleted, rec.raw)
        except MappingError as e:
            failures.append((rec.source_id, rec.raw, str(e)))
            continue
        except (LookupError, TypeError, ValueError, AttributeError, ArithmeticError) as e:
            # A record of a shape no mapper check foresaw (a damaged file, an odd payload): it is
            # skipped and kept for the owner like any unmappable record, not the end of the sync.
            log.warning("sync %s %s %s unreadable", conn.provider, page.entity, rec.source_id)
            failures.append((rec.source_id, rec.raw, f"unreadable record ({type(e).__name__})"))
            continue
        if isinstance(out, Deleted):
            deleted.append(out.source_id)
        else:
            mapped.append(out)
    if page.entity == "invoices":
        failures += [(r.source_id, None, msg) for r, msg in writer.invoices(mapped)]
    else:
        getattr(writer, page.entity)(mapped)
    result.upserted[page.entity] = result.upserted.get(page.entity, 0) + len(mapped)
    if deleted:
        result.deleted[page.entity] = result.deleted.get(page.entity, 0) + writer.deletions(
            page.entity, deleted
        )
    for source_id, raw, message in failures:
        log.warning("sync %s %s %s skipped: %s", conn.provider, page.entity, source_id, message)
        session.add(
            SyncError(
                company_id=conn.company_id,
                connection_id=conn.id,
                entity=page.entity,
                source_id=source_id,
                message=message,
                # Decimal amounts (QuickBooks payloads) are kept as exact strings in JSON.
                raw=json.loads(json.dumps(raw, default=str)) if isinstance(raw, dict) else None,
                occurred_at=clock.now(),
            )
        )
    result.errors += len(failures)
    return writer.kept


def _save_cursor(
    session: Session, connection_id: int, entity: str, value: str | None, clock: Clock
) -> None:
    """One statement: insert the cursor or move it (unique on connection and entity)."""
    insert = dialect_insert(session)(SyncCursor.__table__)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["connection_id", "entity"],
            set_={"value": insert.excluded.value, "updated_at": insert.excluded.updated_at},
        ),
        {
            "connection_id": connection_id,
            "entity": entity,
            "value": value,
            "updated_at": clock.now(),
        },
    )


# After a large load, PostgreSQL's planner still holds the statistics of a nearly empty table and
# scans every row for each lookup by source id (measured: 125 ms a lookup at 100k invoices). A
# table never analyzed is as bad during the load: each page's lookups by source id (and the
# collected payments' look at the page) scanned every row loaded so far, from 3 ms a page to
# 50 ms by the 100th (4.5 s of a 37 s sync of 100k invoices, issue 14). So an entity's tables
# are analyzed once its load reaches ANALYZE_AFTER rows (the planner scales what it learns with
# the table's growth from then on) and again after its last page.
ANALYZE_AFTER = 5000
ANALYZED = {
    "customers": ("customers", "contacts"),
    "invoices": ("invoices",),
    "credit_notes": ("credit_notes", "payment_allocations"),
    "payments": ("payments", "payment_allocations"),
}


def _analyze(factory: sessionmaker[Session], entity: str) -> None:
    with factory() as session:
        if session.get_bind().dialect.name != "postgresql":
            return
        for table in ANALYZED[entity]:
            session.execute(text(f"ANALYZE {table}"))
        session.commit()


@contextmanager
def _settled_heap() -> Iterator[Callable[[], None]]:
    """A function that moves what is alive now out of the garbage collector's sight until the
    sync ends. Called as each entity's first page arrives, when what the connector read (the
    demo ledger's whole file: millions of objects at 100k invoices) is alive: otherwise every
    full collection, set off by the pages' own short-lived objects, walks all of it again
    (14 collections, a third of a 100k-invoice sync's time, issue 14). Refcounting still frees
    those objects; only cycles among them wait for the end of the sync. Process-wide, so
    counted: the last sync to end gives the collector everything back."""
    held = False

    def freeze() -> None:
        nonlocal held
        heap.freeze(held)
        held = True

    try:
        yield freeze
    finally:
        if held:
            heap.let_go()


def _settled_after_first(pages: Iterable[Page], settle: Callable[[], None]) -> Iterator[Page]:
    """The pages, with what is alive once the first has arrived (what the connector read for
    it: the demo ledger's whole file) moved out of the collector's sight (`settle`), and no
    collection while that first page is read: a full collection set off by the reading's own
    allocations walked all of it once more (a 100k-invoice demo sync, issue 14). Process-wide:
    while a first page waits out a ledger's rate limit (seconds at most), the other threads'
    cycles wait for the collector too; refcounting still frees everything else."""
    found = iter(pages)
    with heap.paused():
        first = next(found, None)
        settle()  # before the collector is back: its next collection would walk them all
    if first is not None:
        yield first
        yield from found


READ_AGAIN = 3


def _read_again(
    factory: sessionmaker[Session],
    conn: Connection,
    connector: LedgerConnector,
    clock: Clock,
    result: SyncResult,
    source_ids: set[str],
) -> None:
    """Invoices whose reading was older than a write-back: read them now, when the ledger holds
    it, so what else changed on them (in the same reading or since) is not lost until the next
    change. A write-back landing during this read too sends them round again, a few times."""
    for _ in range(READ_AGAIN):
        with factory() as session:
            before = written_back(session, conn.company_id)
        page = Page("invoices", connector.read_invoices(sorted(source_ids)), None)
        with transaction(factory) as session:
            source_ids = _apply_page(session, conn, page, clock, result, before)
        if not source_ids:
            return
    log.warning("invoices %s kept changing during the sync; the next sync reads them", source_ids)


def _batches(pages: Iterable[Page], records: int) -> Iterator[list[Page]]:
    """The pages in order, in lists of at least `records` records (the last may hold fewer), each
    list committed as one transaction. When fetching a page fails (a rate limit, the ledger
    unreachable), the pages fetched before it come first, so what was read is kept, then the
    failure."""
    batch: list[Page] = []
    count = 0
    try:
        for page in pages:
            batch.append(page)
            count += len(page.records)
            if count >= records:
                yield batch
                batch, count = [], 0
    except Exception:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


def load_cursors(session: Session, connection_id: int) -> dict[str, str | None]:
    rows = session.execute(
        select(SyncCursor.entity, SyncCursor.value).where(SyncCursor.connection_id == connection_id)
    )
    return dict(rows.tuples().all())


def _sync_entities(
    factory: sessionmaker[Session],
    conn: Connection,
    connector: LedgerConnector,
    clock: Clock,
    cursors: dict[str, str | None],
    result: SyncResult,
    progress: Progress | None,
    settle: Callable[[], None],
) -> None:
    per_commit = records_per_commit(factory)
    for entity in ENTITIES:
        done, again = 0, set()
        # What the ledger had confirmed before this read: a write-back confirmed later may
        # be missing from what is read, and must not be undone by it.
        with factory() as session:
            before = written_back(session, conn.company_id)
        pages = _settled_after_first(connector.pull(entity, cursors.get(entity)), settle)
        for batch in _batches(pages, per_commit):
            so_far = done
            with transaction(factory) as session:
                # The pages and the cursor that covers them: redone if a power cut loses them.
                relax_durability(session)
                for page in batch:
                    again |= _apply_page(session, conn, page, clock, result, before)
                    result.pages += 1
                    done += len(page.records)
                    if progress:
                        progress(entity, done, page.total)
                # The last cursor given, as when each page saved its own.
                cursor = next((p.cursor for p in reversed(batch) if p.cursor is not None), None)
                if cursor is not None:
                    _save_cursor(session, conn.id, entity, cursor, clock)
            if so_far < ANALYZE_AFTER <= done:
                _analyze(factory, entity)
        if again:
            _read_again(factory, conn, connector, clock, result, again)
        if done >= ANALYZE_AFTER:
            _analyze(factory, entity)


def sync_connection(
    factory: sessionmaker[Session],
    connection_id: int,
    connector: LedgerConnector,
    clock: Clock,
    *,
    full: bool = False,
    progress: Progress | None = None,
) -> SyncResult:
    result = SyncResult()
    with factory() as session:
        conn = session.get(Connection, connection_id)
        if conn is None:
            raise ValueError(f"no connection {connection_id}")
        session.expunge(conn)
        cursors = {} if full else load_cursors(session, connection_id)
    try:
        with _settled_heap() as settle:
            _sync_entities(factory, conn, connector, clock, cursors, result, progress, settle)
        checkpoint(factory)  # what the pages' commits left in the log (else the next commit)
    except RateLimited as e:
        # Not a failure: the provider asked for a pause, and the job runs again when it ends
        # (worker.claim_and_run); what was committed stays, the cursor resumes from there.
        log.warning("sync of %s connection %s paused: %s", conn.provider, connection_id, e)
        raise
    except ArbridgeError as e:
        # What was committed stays; the owner sees why the rest did not arrive.
        with transaction(factory) as session:
            row = session.get(Connection, connection_id)
            assert row is not None
            row.last_sync_error = str(e)[:2000]
            log_activity(session, clock, conn.company_id, "sync.failed", f"Sync failed: {e}")
        raise
    with transaction(factory) as session:
        row = session.get(Connection, connection_id)
        assert row is not None
        row.last_sync_at = clock.now()
        row.last_sync_error = None
    log.info("synced %s connection %s: %s", conn.provider, connection_id, result)
    return result
