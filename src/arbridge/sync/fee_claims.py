"""A charge that becomes a ledger invoice of its own (a late fee, interest, an installment plan's
fee): its assessment claimed once under (invoice, kind, period), and its ledger write queued in
the same transaction under the same key, so reruns and a second worker make nothing more."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.money import Money
from arbridge.sync.db import dialect_insert
from arbridge.sync.model import LateFeeAssessment
from arbridge.sync.outbox_kinds import LedgerFeeInvoice, fee_invoice_key, queue


@dataclass(frozen=True)
class FeeClaim:
    company_id: int
    connection_id: int
    invoice_id: int  # the invoice it is charged on
    customer_id: int
    customer_source_id: str
    kind: str  # sync.model.FEE_KINDS
    period: str  # 7 characters at most
    amount: Money
    description: str
    basis: str  # how it was worked out, in words
    assessed_on: date
    due_on: date
    reference: str  # the invoice number(s) it is about


def claim_fee_invoice(session: Session, clock: Clock, c: FeeClaim) -> int | None:
    """Claim the charge and queue its ledger invoice; the assessment's id, or None when the key
    was taken already (by an earlier run or another worker)."""
    key = fee_invoice_key(c.invoice_id, c.kind, c.period)
    new_id = session.execute(
        dialect_insert(session)(LateFeeAssessment.__table__)
        .values(
            company_id=c.company_id,
            invoice_id=c.invoice_id,
            customer_id=c.customer_id,
            kind=c.kind,
            period=c.period,
            currency=c.amount.currency,
            amount_minor=c.amount.minor,
            description=c.description[:200],
            basis=c.basis,
            assessed_on=c.assessed_on,
            status="queued",
            outbox_key=key,
            created_at=clock.now(),
        )
        .on_conflict_do_nothing(index_elements=["invoice_id", "kind", "period"])
        .returning(LateFeeAssessment.__table__.c.id)
    ).scalar()
    if new_id is None:
        return None
    queue(
        session,
        clock,
        company_id=c.company_id,
        key=key,
        payload=LedgerFeeInvoice(
            connection_id=c.connection_id,
            assessment_id=new_id,
            customer_source_id=c.customer_source_id,
            currency=c.amount.currency,
            amount=c.amount.amount,
            issued_on=c.assessed_on,
            due_on=c.due_on,
            description=c.description,
            reference=c.reference,
        ),
    )
    return new_id
