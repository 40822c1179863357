"""Keeps the figures of collections.settled stored on invoices and allocations, in the same
transaction as the writes that change them: every writer of invoices, payments, credit notes
and allocations calls `refresh` with the invoices it touched (the sync's set-based writes in
`PageWriter`, ORM writes through the session listener in `insight_cache`), and migration 0029
fills them for what was synced before.

Three reads and two bulk updates per call, whatever the number of invoices (a sync page's)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, and_, case, cast, func, inspect, select
from sqlalchemy.orm import Session

from arbridge.collections.settled import InvoiceFacts, SettlementFacts, SettlementIn, settle
from arbridge.sync.bulk import insert_rows, update_rows
from arbridge.sync.db import among
from arbridge.sync.model import Company, CreditNote, Invoice, Payment, PaymentAllocation

GONE = ("voided", "deleted")
BATCH = 5000


def refresh(session: Session, invoice_ids: Iterable[int]) -> None:
    """Work out again the stored figures of these invoices and of all their allocations, and
    write those that change."""
    ids = sorted(set(invoice_ids) - {None})  # type: ignore[arg-type]
    for k in range(0, len(ids), BATCH):
        _refresh(session, ids[k : k + BATCH])


def settle_rows(
    session: Session, rows: list[dict[str, Any]], stored: dict[str, int], home_currency: str
) -> None:
    """Put into each invoice row about to be upserted (a sync page's) its stored figures, worked
    out from the row's own values and, for an invoice already stored (`stored`: source id ->
    id), from its allocations, whose figures are updated too: what `refresh` after the upsert
    would store, without writing every invoice a second time (each write of an invoice is its
    dozen indexes again: a third of a 100k-invoice first sync's index work, issue 14). One read
    and at most one bulk update, whatever the number of rows."""
    figures: dict[int, tuple[date | None, int, date | None]] = {}
    by_invoice = _allocations_of(session, sorted(set(stored.values())), figures)
    alloc_rows: list[dict[str, Any]] = []
    for row in rows:
        facts, settled = settle(
            row["total_minor"],
            row["currency"],
            Decimal(row["exchange_rate"]),
            home_currency,
            row["issued_on"],
            row["due_on"],
            row["status"] not in GONE,
            by_invoice.get(stored.get(row["source_id"], 0), ()),
        )
        row.update(facts._asdict())
        alloc_rows += _changed(settled, row["due_on"], figures)
    update_rows(session, PaymentAllocation.__table__, alloc_rows)


def _allocations_of(
    session: Session,
    ids: list[int],
    figures: dict[int, tuple[date | None, int, date | None]] | None = None,
) -> dict[int, list[SettlementIn]]:
    """Each invoice's allocations as `settle` takes them, by invoice id; with `figures`, each
    allocation's stored (counted_on, home_minor, due_on) put into it by allocation id."""
    by_invoice: dict[int, list[SettlementIn]] = {}
    if not ids:
        return by_invoice
    applied_on = func.coalesce(
        PaymentAllocation.applied_on, Payment.received_on, CreditNote.issued_on
    )
    stored = (
        (PaymentAllocation.counted_on, PaymentAllocation.home_minor, PaymentAllocation.due_on)
        if figures is not None
        else ()
    )
    for k in range(0, len(ids), BATCH):
        for alloc_id, invoice_id, on, amount, pay_status, credit_status, *was in session.execute(
            select(
                PaymentAllocation.id,
                PaymentAllocation.invoice_id,
                applied_on,
                PaymentAllocation.amount_minor,
                Payment.status,
                CreditNote.status,
                *stored,
            )
            .outerjoin(Payment, Payment.id == PaymentAllocation.payment_id)
            .outerjoin(CreditNote, CreditNote.id == PaymentAllocation.credit_note_id)
            .where(among(session, PaymentAllocation.invoice_id, ids[k : k + BATCH]))
        ).tuples():
            live = pay_status not in GONE and credit_status not in GONE
            by_invoice.setdefault(invoice_id, []).append(
                SettlementIn(alloc_id, on, int(amount), live)
            )
            if figures is not None:
                figures[alloc_id] = (was[0], int(was[1]), was[2])
    return by_invoice


def _refresh(session: Session, ids: list[int]) -> None:
    figures: dict[int, tuple[date | None, int, date | None]] = {}
    by_invoice = _allocations_of(session, ids, figures)
    invoice_rows, alloc_rows, _new = _settled(session, ids, by_invoice, figures)
    update_rows(session, Invoice.__table__, invoice_rows)
    update_rows(session, PaymentAllocation.__table__, alloc_rows)


# Stand-in ids of allocations not yet inserted (`insert_settled`): above every stored one, in
# the order they will be inserted, as `settle` orders a day's allocations by id.
_NEW = 1 << 62


def insert_settled(
    session: Session, rows: list[dict[str, Any]], live: list[bool], settled: Iterable[int]
) -> None:
    """INSERT a payments' or credit notes' page's allocations (`rows`; `live`: whether each
    one's payment or credit note counts) with their stored figures, and store again those of
    every invoice they and `settled` (invoices the page's earlier allocations settled) concern:
    what `refresh` after a plain INSERT stores, without writing each new allocation a second
    time (on a first sync every allocation: issue 14). An allocation already stored is
    written only when its figures change."""
    ids = sorted(set(settled) | {row["invoice_id"] for row in rows})
    figures: dict[int, tuple[date | None, int, date | None]] = {}
    by_invoice = _allocations_of(session, ids, figures)
    for k, (row, counts) in enumerate(zip(rows, live, strict=True)):
        by_invoice.setdefault(row["invoice_id"], []).append(
            SettlementIn(_NEW + k, row["applied_on"], int(row["amount_minor"]), counts)
        )
    invoice_rows, alloc_rows, new = _settled(session, ids, by_invoice, figures)
    insert_rows(
        session,
        PaymentAllocation.__table__,
        [{**row, **new[_NEW + k]} for k, row in enumerate(rows)],
    )
    update_rows(session, Invoice.__table__, invoice_rows)
    update_rows(session, PaymentAllocation.__table__, alloc_rows)


def _settled(
    session: Session,
    ids: list[int],
    by_invoice: dict[int, list[SettlementIn]],
    figures: dict[int, tuple[date | None, int, date | None]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """The stored figures of these invoices, given their allocations (`by_invoice`): a row per
    invoice whose figures change, a row per stored allocation whose figures change (`figures`:
    each one's as stored), and the figures of each allocation not yet stored (a stand-in id
    from _NEW up)."""
    invoices = session.execute(
        select(
            Invoice.id,
            Invoice.total_minor,
            Invoice.currency,
            Invoice.exchange_rate,
            Company.home_currency,
            Invoice.issued_on,
            Invoice.due_on,
            Invoice.status,
            *(getattr(Invoice, name) for name in InvoiceFacts._fields),
        )
        .join(Company, Company.id == Invoice.company_id)
        .where(among(session, Invoice.id, ids))
    ).tuples()
    invoice_rows: list[dict[str, Any]] = []
    alloc_rows: list[dict[str, Any]] = []
    new: dict[int, dict[str, Any]] = {}
    for invoice_id, total, currency, rate, home, issued_on, due_on, status, *was in invoices:
        facts, allocs = settle(
            int(total),
            currency,
            Decimal(rate),
            home,
            issued_on,
            due_on,
            status not in GONE,
            by_invoice.get(invoice_id, ()),
        )
        # An invoice whose figures stay as stored is not written again (on PostgreSQL each
        # write of an invoice is a new entry in every one of its indexes).
        if tuple(facts) != tuple(was):
            invoice_rows.append({"id": invoice_id, **facts._asdict()})
        new |= {
            a.id: {"counted_on": a.counted_on, "home_minor": a.home_minor, "due_on": due_on}
            for a in allocs
            if a.id >= _NEW
        }
        alloc_rows += _changed([a for a in allocs if a.id < _NEW], due_on, figures)
    return invoice_rows, alloc_rows, new


def _changed(
    allocs: Iterable[SettlementFacts],
    due_on: date,
    figures: dict[int, tuple[date | None, int, date | None]],
) -> list[dict[str, Any]]:
    """A row for each stored allocation whose figures differ from those stored (`figures`): one
    whose figures stay as stored is not written again."""
    return [
        {"id": a.id, "counted_on": a.counted_on, "home_minor": a.home_minor, "due_on": due_on}
        for a in allocs
        if (a.counted_on, a.home_minor, due_on) != figures[a.id]
    ]


def invoices_settled_by(session: Session, column: Any, ids: Iterable[int]) -> set[int]:
    """The invoices that allocations of these payments or credit notes (`column`: the
    allocation's payment_id or credit_note_id) settle."""
    wanted = list(ids)
    if not wanted:
        return set()
    return set(
        session.scalars(
            select(PaymentAllocation.invoice_id).where(among(session, column, wanted))
        ).all()
    )


def refresh_company(session: Session, company_id: int) -> None:
    """Every invoice of the company (the migration's backfill)."""
    ids = session.scalars(
        select(Invoice.id).where(Invoice.company_id == company_id).order_by(Invoice.id)
    ).all()
    refresh(session, ids)


# The columns of a dirty row that change what `settle` works out.
SETTLING = {
    Invoice: ("issued_on", "due_on", "currency", "exchange_rate", "total_minor", "status"),
    Payment: ("received_on", "status"),
    CreditNote: ("issued_on", "status"),
}


def flushed_invoices(
    session: Session, new: Iterable[Any], dirty: Iterable[Any], deleted: Iterable[Any]
) -> set[int]:
    """The invoices whose stored figures an ORM flush may have changed: invoices written,
    allocations added, changed or removed, payments and credit notes whose date or status
    changed (their allocations' invoices)."""
    settlements: dict[Any, set[int]] = {}
    invoices = {o.invoice_id for o in deleted if isinstance(o, PaymentAllocation)}
    for obj, is_new in [(o, True) for o in new] + [(o, False) for o in dirty]:
        state = inspect(obj)
        if isinstance(obj, PaymentAllocation):
            invoices.add(obj.invoice_id)
            invoices.update(v for v in state.attrs["invoice_id"].history.deleted if v)
            continue
        columns = SETTLING.get(type(obj))
        if columns is None or obj.id is None:
            continue
        if not is_new and not any(state.attrs[c].history.has_changes() for c in columns):
            continue
        if isinstance(obj, Invoice):
            invoices.add(obj.id)
        elif not is_new:
            column = (
                PaymentAllocation.payment_id
                if isinstance(obj, Payment)
                else PaymentAllocation.credit_note_id
            )
            settlements.setdefault(column, set()).add(obj.id)
    for column, ids in settlements.items():
        invoices |= invoices_settled_by(session, column, ids)
    return invoices - {None}  # type: ignore[arg-type]


# The queries over what is stored. Each reads one covering index in its own order and sums by
# day, so it costs one pass over the index whatever the days asked about. Plans checked with
# EXPLAIN at 1M invoices (bench/bench_dashboard.py): see each one.


def issued_by_day(session: Session, company_id: int, last: date) -> list[tuple[date, date, int]]:
    """The home-currency totals of the invoices that count, issued on or before `last`, per
    (issue date, due date). SQLite: "SEARCH invoices USING COVERING INDEX
    ix_invoices_issued_home (company_id=? AND issued_on<?)", grouped in index order;
    PostgreSQL: an index-only scan of ix_invoices_issued_home (a GroupAggregate)."""
    i = Invoice
    # Literally the partial index's condition (SUM leaves the others out anyway).
    mine = and_(i.company_id == company_id, i.home_total_minor.is_not(None))
    return _by_day(session, mine, i.issued_on, i.due_on, i.home_total_minor, last)


def settled_by_day(session: Session, company_id: int, last: date) -> list[tuple[date, date, int]]:
    """What the allocations that count took off the home-currency receivables, per (day from
    which they count, their invoice's due date), up to `last`. SQLite: "SEARCH
    payment_allocations USING COVERING INDEX ix_payment_allocations_counted (company_id=? AND
    counted_on<?)"; PostgreSQL: an index-only scan of ix_payment_allocations_counted."""
    a = PaymentAllocation
    return _by_day(session, a.company_id == company_id, a.counted_on, a.due_on, a.home_minor, last)


def _by_day(
    session: Session, mine: Any, day: Any, due_on: Any, amount: Any, last: date
) -> list[tuple[date, date, int]]:
    rows = session.execute(
        select(day, due_on, cast(func.sum(amount), BigInteger))
        .where(mine, day <= last)
        .group_by(day, due_on)
    ).tuples()
    return [(on, due, int(minor or 0)) for on, due, minor in rows]


def closed_by_day(
    session: Session, company_id: int, first: date, last: date
) -> list[tuple[date, int, int, int]]:
    """The invoices closed on first .. last (those whose closing is regular: see
    collections.settled) per closing day: how many, their days to pay summed, how many on
    time. SQLite: "SEARCH invoices USING COVERING INDEX ix_invoices_closed (company_id=? AND
    closed_on>? AND closed_on<?)"; PostgreSQL: an index-only scan of ix_invoices_closed."""
    rows = session.execute(
        select(
            Invoice.closed_on,
            func.count(),
            cast(func.sum(Invoice.days_to_pay), BigInteger),
            cast(func.sum(case((Invoice.days_late <= 0, 1), else_=0)), BigInteger),
        )
        .where(
            Invoice.company_id == company_id,
            Invoice.closed_on >= first,
            Invoice.closed_on <= last,
        )
        .group_by(Invoice.closed_on)
    ).tuples()
    return [(on, int(n), int(to_pay or 0), int(on_time or 0)) for on, n, to_pay, on_time in rows]


def irregular(company_id: int) -> Any:
    """A select of the company's invoices whose closing is worked out from their allocations."""
    return select(Invoice.id).where(
        Invoice.company_id == company_id, Invoice.closing_irregular.is_(True)
    )
