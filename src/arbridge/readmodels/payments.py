"""Payments as the owner's pages list them: recent ones, those of an invoice, a statement's."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from arbridge.sync.model import CheckoutSessionRow, CollectedPayment, Customer, Invoice


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
