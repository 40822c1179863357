"""The sync runner, the only I/O in sync/: fetch a page, map it, upsert it, save the cursor.

Each page is one transaction together with the cursor that covers it, so the cursor moves only
after its data is committed, and a crash re-fetches at most one page. Upserts key on
(company_id, source, source_id), so running a sync again changes nothing. A record that cannot
be mapped becomes a SyncError row and the sync goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, literal, select, text
from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import Clock
from arbridge.connectors.base import ENTITIES, Entity, LedgerConnector, Page
from arbridge.errors import ArbridgeError, MappingError
from arbridge.sync.activity import log_activity
from arbridge.sync.db import dialect_insert, transaction
from arbridge.sync.mappers import demo as demo_mapper
from arbridge.sync.mappers import quickbooks as quickbooks_mapper
from arbridge.sync.model import (
    CollectedAllocation,
    CollectedPayment,
    Connection,
    Contact,
    CreditNote,
    Customer,
    Invoice,
    OutboxMessage,
    Payment,
    PaymentAllocation,
    SyncCursor,
    SyncError,
)
from arbridge.sync.records import (
    CreditNoteData,
    CustomerData,
    Deleted,
    InvoiceData,
    Mapped,
    PaymentData,
)

log = logging.getLogger(__name__)

Progress = Callable[[Entity, int, int | None], None]


@dataclass
class SyncResult:
    upserted: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    pages: int = 0


def _mapper_for(source: str) -> Callable[[str, str, bool, Any], Mapped]:
    if source == "demo":
        return demo_mapper.map_record
    if source == "quickbooks":
        return quickbooks_mapper.map_record
    raise ValueError(f"no mapper for source {source!r}")


def _upsert(session: Session, model: Any, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert or update rows on (company_id, source, source_id); return source_id -> id."""
    if not rows:
        return {}
    keys = ("company_id", "source", "source_id")
    # Core INSERT executed with a list of rows: one cached statement, batched by the driver
    # ("insertmanyvalues"), rather than one giant VALUES clause compiled afresh per page.
    stmt = dialect_insert(session)(model.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: stmt.excluded[name] for name in rows[0] if name not in keys},
    )
    session.execute(stmt, rows)
    first = rows[0]
    return _ids(
        session, model, first["company_id"], first["source"], [r["source_id"] for r in rows]
    )


def _ids(
    session: Session, model: Any, company_id: int, source: str, source_ids: Iterable[str]
) -> dict[str, int]:
    wanted = list(set(source_ids))
    if not wanted:
        return {}
    found = session.execute(
        select(model.source_id, model.id).where(
            model.company_id == company_id, model.source == source, model.source_id.in_(wanted)
        )
    )
    return dict(found.tuples().all())


def _keep_collected_applied(session: Session, invoice_ids: list[int]) -> None:
    """Money arbridge collected that the ledger does not show yet (its write-back is queued or
    failing) stays applied, so a sync in between never reopens a paid invoice for reminders."""
    if not invoice_ids:
        return
    written = select(OutboxMessage.id).where(
        OutboxMessage.key == literal("ledger_payment:") + CollectedPayment.payment_intent_id,
        OutboxMessage.status == "sent",
    )
    held = session.execute(
        select(
            CollectedAllocation.invoice_id,
            func.sum(CollectedAllocation.amount_minor + CollectedAllocation.discount_minor),
        )
        .join(CollectedPayment, CollectedPayment.id == CollectedAllocation.collected_payment_id)
        .where(
            CollectedAllocation.invoice_id.in_(invoice_ids),
            CollectedPayment.status == "succeeded",
            ~written.exists(),
        )
        .group_by(CollectedAllocation.invoice_id)
    ).all()
    for invoice_id, minor in held:
        invoice = session.get(Invoice, invoice_id, populate_existing=True)
        if invoice is None or invoice.status != "open" or not minor:
            continue
        invoice.balance_minor = max(0, invoice.balance_minor - int(minor))
        if invoice.balance_minor == 0:
            invoice.status = "paid"


class _PageWriter:
    def __init__(self, session: Session, conn: Connection, clock: Clock) -> None:
        self.s = session
        self.company_id = conn.company_id
        self.source = conn.provider
        self.now = clock.now()

    def base(self, rec: Any) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "source": self.source,
            "source_id": rec.source_id,
            "source_version": rec.source_version,
            "source_updated_at": rec.source_updated_at,
            "synced_at": self.now,
        }

    def customers(self, recs: list[CustomerData]) -> None:
        ids = _upsert(
            self.s,
            Customer,
            [
                {
                    **self.base(r),
                    "name": r.name[:300],
                    "currency": r.currency,
                    "active": r.active,
                    "deleted": False,
                }
                for r in recs
            ],
        )
        contacts = [
            {
                **self.base(r),
                "source_id": c.source_id,
                "customer_id": ids[r.source_id],
                "name": c.name,
                "email": c.email,
                "phone": c.phone,
                "is_primary": c.is_primary,
            }
            for r in recs
            for c in r.contacts
        ]
        _upsert(self.s, Contact, contacts)

    def _customer_ids(self, recs: Iterable[Any]) -> dict[str, int]:
        return _ids(
            self.s,
            Customer,
            self.company_id,
            self.source,
            [r.customer_source_id for r in recs if r.customer_source_id],
        )

    def invoices(self, recs: list[InvoiceData]) -> list[tuple[InvoiceData, str]]:
        customers = self._customer_ids(recs)
        rows, skipped = [], []
        for r in recs:
            if r.customer_source_id not in customers:
                skipped.append(
                    (r, f"names customer {r.customer_source_id}, which the ledger did not return")
                )
                continue
            rows.append(
                {
                    **self.base(r),
                    "customer_id": customers[r.customer_source_id],
                    "number": r.number,
                    "issued_on": r.issued_on,
                    "due_on": r.due_on,
                    "currency": r.currency,
                    "exchange_rate": r.exchange_rate,
                    "total_minor": r.total.minor,
                    "balance_minor": r.balance.minor,
                    "status": r.status,
                    "terms": r.terms,
                    "lines": r.lines,
                }
            )
        ids = _upsert(self.s, Invoice, rows)
        _keep_collected_applied(self.s, list(ids.values()))
        return skipped

    def _settlements(
        self, model: Any, recs: list[Any], rows: list[dict[str, Any]], column: str
    ) -> None:
        ids = _upsert(self.s, model, rows)
        if not ids:
            return
        # A re-synced payment or credit states its allocations in full: replace ours.
        self.s.execute(
            delete(PaymentAllocation).where(getattr(PaymentAllocation, column).in_(ids.values()))
        )
        invoices = _ids(
            self.s,
            Invoice,
            self.company_id,
            self.source,
            [a.invoice_source_id for r in recs for a in r.allocations],
        )
        allocations = [
            {
                "company_id": self.company_id,
                "invoice_id": invoices[a.invoice_source_id],
                column: ids[r.source_id],
                "amount_minor": a.amount.minor,
                "applied_on": getattr(r, "received_on", None) or r.issued_on,
            }
            for r in recs
            if r.status != "voided"
            for a in r.allocations
            if a.invoice_source_id in invoices
        ]
        if allocations:
            self.s.execute(dialect_insert(self.s)(PaymentAllocation.__table__), allocations)

    def payments(self, recs: list[PaymentData]) -> None:
        customers = self._customer_ids(recs)
        rows = [
            {
                **self.base(r),
                "customer_id": customers.get(r.customer_source_id or ""),
                "received_on": r.received_on,
                "currency": r.amount.currency,
                "exchange_rate": r.exchange_rate,
                "amount_minor": r.amount.minor,
                "unapplied_minor": r.unapplied.minor,
                "reference": r.reference,
                "method": r.method,
                "status": r.status,
            }
            for r in recs
        ]
        self._settlements(Payment, recs, rows, "payment_id")

    def credit_notes(self, recs: list[CreditNoteData]) -> None:
        customers = self._customer_ids(recs)
        rows = [
            {
                **self.base(r),
                "customer_id": customers.get(r.customer_source_id or ""),
                "number": r.number,
                "issued_on": r.issued_on,
                "currency": r.total.currency,
                "exchange_rate": r.exchange_rate,
                "total_minor": r.total.minor,
                "remaining_minor": r.remaining.minor,
                "status": r.status,
            }
            for r in recs
        ]
        self._settlements(CreditNote, recs, rows, "credit_note_id")

    def deletions(self, entity: Entity, source_ids: list[str]) -> int:
        model: Any = {
            "customers": Customer,
            "invoices": Invoice,
            "payments": Payment,
            "credit_notes": CreditNote,
        }[entity]
        ids = _ids(self.s, model, self.company_id, self.source, source_ids)
        for row in self.s.scalars(select(model).where(model.id.in_(ids.values()))):
            row.synced_at = self.now
            if entity == "customers":
                row.deleted = True
                row.active = False
            elif entity == "invoices":
                row.status, row.balance_minor = "deleted", 0
            else:
                row.status = "deleted"
        if entity in ("payments", "credit_notes") and ids:
            column = "payment_id" if entity == "payments" else "credit_note_id"
            self.s.execute(
                delete(PaymentAllocation).where(
                    getattr(PaymentAllocation, column).in_(ids.values())
                )
            )
        return len(ids)


def _apply_page(
    session: Session, conn: Connection, page: Page, clock: Clock, result: SyncResult
) -> None:
    writer = _PageWriter(session, conn, clock)
    mapper = _mapper_for(conn.provider)
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


def _save_cursor(
    session: Session, connection_id: int, entity: str, value: str | None, clock: Clock
) -> None:
    cursor = session.scalar(
        select(SyncCursor).where(
            SyncCursor.connection_id == connection_id, SyncCursor.entity == entity
        )
    )
    if cursor is None:
        session.add(
            SyncCursor(
                connection_id=connection_id, entity=entity, value=value, updated_at=clock.now()
            )
        )
    else:
        cursor.value, cursor.updated_at = value, clock.now()


# After a large load, PostgreSQL's planner still holds the statistics of a nearly empty table and
# scans every row for each lookup by source id (measured: 125 ms a lookup at 100k invoices).
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


def load_cursors(session: Session, connection_id: int) -> dict[str, str | None]:
    rows = session.execute(
        select(SyncCursor.entity, SyncCursor.value).where(SyncCursor.connection_id == connection_id)
    )
    return dict(rows.tuples().all())


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
        for entity in ENTITIES:
            done = 0
            for page in connector.pull(entity, cursors.get(entity)):
                with transaction(factory) as session:
                    _apply_page(session, conn, page, clock, result)
                    if page.cursor is not None:
                        _save_cursor(session, connection_id, entity, page.cursor, clock)
                result.pages += 1
                done += len(page.records)
                if progress:
                    progress(entity, done, page.total)
            if done >= ANALYZE_AFTER:
                _analyze(factory, entity)
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
