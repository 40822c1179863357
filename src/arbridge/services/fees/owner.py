"""What the owner does about charges: waive one (its ledger invoice is voided through the
outbox), and exempt a customer from late fees and interest."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.errors import NotFound
from arbridge.money import Money
from arbridge.sync.model import Company, Customer, CustomerReminderSettings, LateFeeAssessment
from arbridge.sync.outbox_kinds import LedgerFeeVoid, fee_void_key, queue
from arbridge.sync.store import ledger_connection, log_activity


def waive(
    session: Session, clock: Clock, company: Company, assessment_id: int, user_id: int | None
) -> LateFeeAssessment:
    """Waive a charge: it is not charged again, stops counting against the cap, and its ledger
    invoice (made, or on its way) is voided once, through the outbox. Waiving twice is one."""
    row = session.scalar(
        select(LateFeeAssessment)
        .where(LateFeeAssessment.id == assessment_id, LateFeeAssessment.company_id == company.id)
        .with_for_update()
    )
    if row is None:
        raise NotFound(f"there is no charge {assessment_id}")
    if row.status == "waived":
        return row
    row.status = "waived"
    row.waived_at = clock.now()
    row.waived_by = user_id
    conn = ledger_connection(session, company.id)
    if conn is not None:
        queue(
            session,
            clock,
            company_id=company.id,
            key=fee_void_key(row.invoice_id, row.kind, row.period),
            payload=LedgerFeeVoid(conn.id, row.id, row.outbox_key),
        )
    log_activity(
        session,
        clock,
        company.id,
        "late_fees.waived",
        f"Waived: {row.description}, {Money.from_minor(row.amount_minor, row.currency).format()}",
        invoice_id=row.invoice_id,
        customer_id=row.customer_id,
    )
    return row


def set_exempt(
    session: Session, clock: Clock, company: Company, customer_id: int, exempt: bool
) -> Customer:
    """Exempt a customer from late fees and interest (or end the exemption). Charges already
    made stay until waived."""
    customer = session.scalar(
        select(Customer).where(Customer.id == customer_id, Customer.company_id == company.id)
    )
    if customer is None:
        raise NotFound(f"there is no customer {customer_id}")
    own = session.scalar(
        select(CustomerReminderSettings).where(CustomerReminderSettings.customer_id == customer_id)
    )
    if own is None:
        own = CustomerReminderSettings(company_id=company.id, customer_id=customer_id)
        session.add(own)
    own.late_fees_exempt = exempt
    log_activity(
        session,
        clock,
        company.id,
        "late_fees.exempt" if exempt else "late_fees.unexempt",
        f"{customer.name} {'exempted from' if exempt else 'no longer exempt from'} late fees",
        customer_id=customer_id,
    )
    return customer
