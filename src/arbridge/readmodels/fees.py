"""Late fees and interest as the owner's pages show them, in one query each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from arbridge.money import Money
from arbridge.sync.model import (
    Customer,
    CustomerReminderSettings,
    Invoice,
    LateFeeAssessment,
    OutboxMessage,
)


@dataclass(frozen=True)
class Charge:
    id: int
    invoice_id: int
    invoice_number: str
    kind: str
    period: str
    amount: Money
    description: str
    basis: str
    assessed_on: date
    status: str  # queued, posted, failed (the ledger refused it), waived
    ledger_ref: str | None
    reason: str | None  # why it failed
    # The number the fee invoice went to the customer with (LF-1482), once synced back; else
    # None, and the ledger's own id (`ledger_ref`) stands in.
    fee_invoice_number: str | None = None


def charges(
    session: Session, company_id: int, *, invoice_id: int | None = None, limit: int = 200
) -> Sequence[Charge]:
    """The company's charges (or one invoice's), newest first, each with its ledger write's
    state: a queued charge whose write gave up shows as failed, with the reason."""
    fee_invoice = aliased(Invoice)
    query = (
        select(
            LateFeeAssessment, Invoice.number, Invoice.source_id, OutboxMessage, fee_invoice.number
        )
        .join(Invoice, Invoice.id == LateFeeAssessment.invoice_id)
        .outerjoin(OutboxMessage, OutboxMessage.key == LateFeeAssessment.outbox_key)
        .outerjoin(
            fee_invoice,
            (fee_invoice.company_id == LateFeeAssessment.company_id)
            & (fee_invoice.source == Invoice.source)
            & (fee_invoice.source_id == LateFeeAssessment.ledger_ref),
        )
        .where(LateFeeAssessment.company_id == company_id)
        .order_by(LateFeeAssessment.id.desc())
        .limit(limit)
    )
    if invoice_id is not None:
        query = query.where(LateFeeAssessment.invoice_id == invoice_id)
    out = []
    for a, number, source_id, write, fee_number in session.execute(query):
        status, reason = a.status, None
        if status == "queued" and write is not None and write.status in ("failed", "dead"):
            status, reason = "failed", write.last_error
        out.append(
            Charge(
                id=a.id,
                invoice_id=a.invoice_id,
                invoice_number=number or source_id,
                kind=a.kind,
                period=a.period,
                amount=Money.from_minor(a.amount_minor, a.currency),
                description=a.description,
                basis=a.basis,
                assessed_on=a.assessed_on,
                status=status,
                ledger_ref=a.ledger_ref or (write.provider_ref if write is not None else None),
                reason=reason,
                fee_invoice_number=fee_number,
            )
        )
    return out


def exempt_customers(session: Session, company_id: int) -> Sequence[tuple[int, str]]:
    """(id, name) of the customers exempt from late fees, by name."""
    return session.execute(
        select(Customer.id, Customer.name)
        .join(CustomerReminderSettings, CustomerReminderSettings.customer_id == Customer.id)
        .where(
            CustomerReminderSettings.company_id == company_id,
            CustomerReminderSettings.late_fees_exempt.is_(True),
        )
        .order_by(Customer.name)
    ).all()  # type: ignore[return-value]


def is_exempt(session: Session, customer_id: int) -> bool:
    return bool(
        session.scalar(
            select(CustomerReminderSettings.late_fees_exempt).where(
                CustomerReminderSettings.customer_id == customer_id
            )
        )
    )


@dataclass(frozen=True)
class PayPageCharge:
    """A charge as the customer's pay page shows it: what it is, why, since when, and the
    synced ledger invoice that carries it (None until the ledger has it and a sync brought it
    in), whose open balance a Checkout for the original invoice can take along."""

    invoice_id: int  # the original invoice
    description: str
    basis: str
    assessed_on: date
    amount: Money
    fee_invoice: Invoice | None


def pay_page_charges(
    session: Session, company_id: int, invoice_ids: Sequence[int]
) -> dict[int, list[PayPageCharge]]:
    """The charges on these invoices that stand (not waived), oldest first, each with its own
    synced invoice, in one query: for the pay page and a Checkout that collects fees together
    with the invoice."""
    if not invoice_ids:
        return {}
    rows = session.execute(
        select(LateFeeAssessment, Invoice)
        .outerjoin(
            Invoice,
            (Invoice.company_id == LateFeeAssessment.company_id)
            & (Invoice.source_id == LateFeeAssessment.ledger_ref),
        )
        .where(
            LateFeeAssessment.company_id == company_id,
            LateFeeAssessment.invoice_id.in_(invoice_ids),
            LateFeeAssessment.status != "waived",
        )
        .order_by(LateFeeAssessment.id)
    ).all()
    out: dict[int, list[PayPageCharge]] = {}
    for a, inv in rows:
        out.setdefault(a.invoice_id, []).append(
            PayPageCharge(
                invoice_id=a.invoice_id,
                description=a.description,
                basis=a.basis,
                assessed_on=a.assessed_on,
                amount=Money.from_minor(a.amount_minor, a.currency),
                fee_invoice=inv,
            )
        )
    return out
