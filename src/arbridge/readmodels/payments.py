"""Payments as the owner's pages list them: recent ones, those of an invoice, a statement's."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from arbridge.sync.model import (
    CheckoutSessionRow,
    CollectedPayment,
    Customer,
    Invoice,
    OutboxMessage,
)


def recent_payments(
    s: Session, company_id: int, limit: int = 10
) -> list[tuple[CollectedPayment, Customer | None]]:
    rows = s.execute(
        select(CollectedPayment, Customer)
        .outerjoin(Customer, CollectedPayment.customer_id == Customer.id)
        .where(CollectedPayment.company_id == company_id)
        .order_by(CollectedPayment.updated_at.desc(), CollectedPayment.id.desc())
        .limit(limit)
    ).all()
    return [(p, c) for p, c in rows]


def invoice_payments(s: Session, invoice: Invoice) -> list[CollectedPayment]:
    """Every payment through arbridge that touched this invoice: applied to it, or meant for it
    (a payment that arrived after the invoice was paid otherwise is all overpayment)."""
    rows = s.scalars(
        select(CollectedPayment)
        .where(
            CollectedPayment.company_id == invoice.company_id,
            CollectedPayment.customer_id == invoice.customer_id,
        )
        .options(selectinload(CollectedPayment.allocations))  # not one query per payment
        .order_by(CollectedPayment.created_at.desc(), CollectedPayment.id.desc())
    ).all()
    sessions = [p.checkout_session_id for p in rows if p.checkout_session_id]
    meant = dict(
        s.execute(
            select(CheckoutSessionRow.stripe_session_id, CheckoutSessionRow.invoice_ids).where(
                CheckoutSessionRow.company_id == invoice.company_id,
                CheckoutSessionRow.stripe_session_id.in_(sessions),
            )
        )
        .tuples()
        .all()
    )
    return [
        p
        for p in rows
        if any(a.invoice_id == invoice.id for a in p.allocations)
        or invoice.id in (meant.get(p.checkout_session_id) or [])
    ]


def customer_open_invoices(s: Session, customer: Customer) -> list[Invoice]:
    return list(
        s.scalars(
            select(Invoice).where(
                Invoice.company_id == customer.company_id,
                Invoice.customer_id == customer.id,
                Invoice.is_open,
            )
        )
    )


# Where a payment's write into the ledger stands (its outbox row), in the owner's words.
LEDGER_STATES = {
    "pending": "waiting to be recorded in the ledger",
    "sending": "being recorded in the ledger",
    "sent": "recorded in the ledger",
    "failed": "not recorded yet: trying again",
    "dead": "could not be recorded: needs attention",
    "maybe_sent": "unclear whether the ledger took it: checking",
}


@dataclass(frozen=True)
class CollectedRow:
    payment: CollectedPayment
    customer: Customer | None
    invoices: list[Invoice]
    ledger: OutboxMessage | None

    @property
    def ledger_state(self) -> str:
        if self.ledger is None:
            return "recorded once the payment succeeds" if self.payment.status == "pending" else "—"
        return LEDGER_STATES.get(self.ledger.status, self.ledger.status)


@dataclass(frozen=True)
class CollectedPage:
    rows: list[CollectedRow]
    page: int
    prev: int | None
    next: int | None


def collected_page(
    s: Session,
    company_id: int,
    *,
    status: str | None = None,
    customer_id: int | None = None,
    page: int = 1,
    page_size: int = 50,
) -> CollectedPage:
    """Every payment collected through arbridge, newest first, with its customer, the invoices
    it paid (or was meant for, while pending), and its ledger write-back: five queries a page."""
    stmt = (
        select(CollectedPayment, Customer)
        .outerjoin(Customer, Customer.id == CollectedPayment.customer_id)
        .where(CollectedPayment.company_id == company_id)
        .options(selectinload(CollectedPayment.allocations))
        .order_by(CollectedPayment.created_at.desc(), CollectedPayment.id.desc())
    )
    if status is not None:
        stmt = stmt.where(CollectedPayment.status == status)
    if customer_id is not None:
        stmt = stmt.where(CollectedPayment.customer_id == customer_id)
    found = s.execute(stmt.limit(page_size + 1).offset((page - 1) * page_size)).all()
    shown = [(p, c) for p, c in found[:page_size]]
    sessions = {p.checkout_session_id for p, _c in shown if p.checkout_session_id}
    meant: dict[str, list[int]] = {}
    if sessions:
        meant = dict(
            s.execute(
                select(CheckoutSessionRow.stripe_session_id, CheckoutSessionRow.invoice_ids).where(
                    CheckoutSessionRow.company_id == company_id,
                    CheckoutSessionRow.stripe_session_id.in_(sessions),
                )
            )
            .tuples()
            .all()
        )

    def invoice_ids(p: CollectedPayment) -> list[int]:
        applied = [a.invoice_id for a in p.allocations]
        return applied or list(meant.get(p.checkout_session_id or "", []) or [])

    wanted = {i for p, _c in shown for i in invoice_ids(p)}
    invoices = (
        {
            i.id: i
            for i in s.scalars(
                select(Invoice).where(Invoice.company_id == company_id, Invoice.id.in_(wanted))
            )
        }
        if wanted
        else {}
    )
    keys = {p.ledger_key for p, _c in shown if p.ledger_key}
    ledger = (
        {
            m.key: m
            for m in s.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.company_id == company_id, OutboxMessage.key.in_(keys)
                )
            )
        }
        if keys
        else {}
    )
    rows = [
        CollectedRow(
            p,
            c,
            [invoices[i] for i in invoice_ids(p) if i in invoices],
            ledger.get(p.ledger_key) if p.ledger_key else None,
        )
        for p, c in shown
    ]
    return CollectedPage(
        rows, page, page - 1 if page > 1 else None, page + 1 if len(found) > page_size else None
    )
