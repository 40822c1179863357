"""The sync runner, the only I/O in sync/: fetch a page, map it, upsert it, save the cursor.

Each page is one transaction together with the cursor that covers it, so the cursor moves only
after its data is committed, and a crash re-fetches at most one page. Upserts key on
(company_id, source, source_id), so running a sync again changes nothing. A record that cannot
be mapped becomes a SyncError row and the sync goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import Clock
from arbridge.collections.aging import open_balance
from arbridge.connectors.base import ENTITIES, Entity, LedgerConnector, Page, SourceRecord
from arbridge.errors import ArbridgeError, MappingError, RateLimited
from arbridge.money import Money
from arbridge.sync.activity import log_activity
from arbridge.sync.db import dialect_insert, transaction
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
from arbridge.sync.outbox_kinds import (
    LEDGER_WRITES,
    OutboxKind,
    ledger_discount_key,
    ledger_payment_key,
    ledger_reversal_prefix,
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


@dataclass(frozen=True)
class WrittenBack:
    """Which of a company's ledger writes (`outbox_kinds.LEDGER_WRITES`: a collected payment's
    write-back, its early-payment discount, its restatements) the ledger had confirmed when a
    read began: the highest outbox id then, and the writes not confirmed then."""

    last_id: int
    in_flight: frozenset[int]

    def holds(self, write: OutboxMessage) -> bool | None:
        """Does a reading taken after this point show the write? True: it was confirmed before
        the read; False: it has not landed (queued, failing, given up); None: it may or may not
        (it is being sent, or it landed while the ledger was being read)."""
        if write.status == "sending":
            return None
        if write.status != "sent":
            return False
        return None if write.id > self.last_id or write.id in self.in_flight else True


NOW = WrittenBack(2**62, frozenset())  # a reading taken now: every confirmed write is in it


def written_back(session: Session, company_id: int) -> WrittenBack:
    last = session.scalar(select(func.max(OutboxMessage.id))) or 0
    waiting = session.scalars(
        select(OutboxMessage.id).where(
            OutboxMessage.company_id == company_id,
            OutboxMessage.kind.in_(LEDGER_WRITES),
            OutboxMessage.status != "sent",
        )
    )
    return WrittenBack(last, frozenset(waiting))


def _chain(payment_intent: str, ledger_key: str | None) -> list[str]:
    """The outbox keys of a payment's ledger writes, oldest first, up to its latest."""
    if ledger_key is None:
        return []
    root = ledger_payment_key(payment_intent)
    prefix = ledger_reversal_prefix(payment_intent)
    last = ledger_key.removeprefix(prefix)
    if ledger_key == last or not last.isdigit():
        return [ledger_key]
    return [root, *(f"{prefix}{n}" for n in range(1, int(last) + 1))]


def _stated(write: OutboxMessage, invoices: dict[str, int]) -> dict[int, int]:
    """What a landed write left applied in the ledger, per invoice (minor units)."""
    p = write.payload or {}
    if write.kind == OutboxKind.LEDGER_REVERSAL:
        return {
            r["invoice_id"]: int(r["amount_minor"]) for r in p.get("stated", p.get("repost", []))
        }
    stated: dict[int, int] = {}
    for line in p.get("refit", p.get("lines", [])):
        invoice_id = invoices.get(line["invoice_source_id"])
        if invoice_id is not None:
            minor = Money(Decimal(line["amount"]), p["currency"]).minor
            stated[invoice_id] = stated.get(invoice_id, 0) + minor
    return stated


@dataclass
class _Lag:
    """Where a reading of the ledger lags behind what arbridge did with the money it collected.

    `by`: per invoice, what the balance read lacks (negative: holds too much), so that each
    collected payment whose latest ledger write the reading does not hold counts as arbridge's
    allocations say now, not as the ledger said before: the invoice's `unposted_minor`. `unsure`: invoices whose reading may or
    may not hold such a write (it landed during the read): they keep the state arbridge holds,
    and are read again once the sync is done."""

    by: dict[int, int] = field(default_factory=dict)
    unsure: set[int] = field(default_factory=set)


def _lag(session: Session, invoices: dict[str, int], before: WrittenBack) -> _Lag:
    """One look at the collected payments applied to these invoices and at their ledger writes
    (a fixed number of queries, whatever the page holds)."""
    lag = _Lag()
    if not invoices:
        return lag
    rows = session.execute(
        select(
            CollectedAllocation.invoice_id,
            CollectedAllocation.amount_minor,
            CollectedAllocation.discount_minor,
            CollectedPayment.id,
            CollectedPayment.payment_intent_id,
            CollectedPayment.ledger_key,
        )
        .join(CollectedPayment, CollectedPayment.id == CollectedAllocation.collected_payment_id)
        .where(CollectedAllocation.invoice_id.in_(list(invoices.values())))
    ).all()
    keys = {
        key
        for row in rows
        for key in (
            *_chain(row.payment_intent_id, row.ledger_key),
            ledger_discount_key(row.payment_intent_id),
        )
    }
    writes = (
        {
            w.key: w
            for w in session.scalars(select(OutboxMessage).where(OutboxMessage.key.in_(keys)))
        }
        if keys
        else {}
    )
    for row in rows:
        invoice_id, amount, discount, _id, payment_intent, ledger_key = row
        chain = [writes[k] for k in _chain(payment_intent, ledger_key) if k in writes]
        credit = writes.get(ledger_discount_key(payment_intent))
        root = writes.get(ledger_payment_key(payment_intent))
        held = {w.id: before.holds(w) for w in (*chain, *([credit] if credit else []))}
        if None in held.values():
            lag.unsure.add(invoice_id)
            continue
        latest = writes.get(ledger_key) if ledger_key else None
        if root is not None and not held[root.id]:
            # The write-back has not landed (restatements wait for it, or find nothing to
            # restate when it gave up): nothing of the payment is in the ledger.
            shown = 0
        elif latest is not None and held[latest.id]:
            shown = amount  # the reading holds the latest write: it says what we say
        else:
            landed = [w for w in chain if held[w.id]]
            shown = _stated(landed[-1], invoices).get(invoice_id, 0) if landed else 0
        # The discount's credit goes with the write-back where no write of its own was queued.
        credited = held[credit.id] if credit is not None else (root is not None and held[root.id])
        shown_discount = discount if credited else 0
        behind = (amount + discount) - (shown + shown_discount)
        if behind:
            lag.by[invoice_id] = lag.by.get(invoice_id, 0) + behind
    return lag


# What arbridge holds of an invoice: (ledger_balance_minor, unposted_minor, status).
Held = tuple[int, int, str]


def _held_now(session: Session, invoice_ids: Iterable[int]) -> dict[int, Held]:
    wanted = list(invoice_ids)
    if not wanted:
        return {}
    rows = session.execute(
        select(
            Invoice.id, Invoice.ledger_balance_minor, Invoice.unposted_minor, Invoice.status
        ).where(Invoice.id.in_(wanted))
    )
    return {i: (ledger, unposted, status) for i, ledger, unposted, status in rows}


def _catch_up(session: Session, lag: _Lag, kept: dict[int, Held]) -> None:
    """Bring the invoices just saved from the ledger's reading up to date with what arbridge did
    that the reading does not hold (see `_Lag`): the lag becomes their `unposted_minor`, and
    their status follows the open balance. One read and one batched write."""
    wanted = set(lag.by) | set(kept)
    if not wanted:
        return
    rows = session.execute(
        select(Invoice.id, Invoice.ledger_balance_minor, Invoice.status, Invoice.total_minor).where(
            Invoice.id.in_(list(wanted))
        )
    ).all()
    changes = []
    for invoice_id, ledger, status, total in rows:
        if status not in ("open", "paid"):
            continue  # voided or deleted in the ledger: its word stands
        if invoice_id in kept:
            ledger, unposted, status = kept[invoice_id]
        else:
            unposted = lag.by[invoice_id]
            status = "open" if open_balance(ledger, unposted, total) else "paid"
        changes.append(
            {
                "id": invoice_id,
                "ledger_balance_minor": ledger,
                "unposted_minor": unposted,
                "status": status,
            }
        )
    if changes:
        session.execute(update(Invoice), changes)


class _PageWriter:
    def __init__(
        self,
        session: Session,
        conn: Connection,
        clock: Clock,
        before: WrittenBack | None = None,
    ) -> None:
        self.s = session
        self.before = before
        self.kept: set[str] = set()  # invoices whose reading was older than a write-back
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
                    "ledger_balance_minor": r.balance.minor,
                    # What the reading lacks is worked out below, for the invoices it concerns.
                    "unposted_minor": 0,
                    "status": r.status,
                    "terms": r.terms,
                    "lines": r.lines,
                }
            )
        before = self.before or NOW
        lag = _lag(
            self.s,
            _ids(self.s, Invoice, self.company_id, self.source, [r["source_id"] for r in rows]),
            before,
        )
        kept = _held_now(self.s, lag.unsure)
        ids = _upsert(self.s, Invoice, rows)
        _catch_up(self.s, lag, kept)
        self.kept |= {source_id for source_id, i in ids.items() if i in kept}
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
                row.status, row.ledger_balance_minor, row.unposted_minor = "deleted", 0, 0
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
    writer = _PageWriter(session, conn, clock, before)
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
            done, again = 0, set()
            # What the ledger had confirmed before this read: a write-back confirmed later may
            # be missing from what is read, and must not be undone by it.
            with factory() as session:
                before = written_back(session, conn.company_id)
            for page in connector.pull(entity, cursors.get(entity)):
                with transaction(factory) as session:
                    again |= _apply_page(session, conn, page, clock, result, before)
                    if page.cursor is not None:
                        _save_cursor(session, connection_id, entity, page.cursor, clock)
                result.pages += 1
                done += len(page.records)
                if progress:
                    progress(entity, done, page.total)
            if again:
                _read_again(factory, conn, connector, clock, result, again)
            if done >= ANALYZE_AFTER:
                _analyze(factory, entity)
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
