"""Everything a collection agency needs about one account: invoices, messages, replies."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.sync.model import (
    Company,
    Contact,
    Customer,
    Invoice,
    InvoiceHold,
    MailMessage,
)

log = logging.getLogger(__name__)


def case_file(session: Session, company: Company, customer: Customer) -> dict[str, Any]:
    """Everything a collection agency needs about one account: invoices, messages, replies."""
    invoices = session.scalars(
        select(Invoice)
        .where(Invoice.customer_id == customer.id, Invoice.company_id == company.id)
        .order_by(Invoice.due_on, Invoice.id)
    ).all()
    mails = session.scalars(
        select(MailMessage)
        .where(MailMessage.customer_id == customer.id, MailMessage.company_id == company.id)
        .order_by(MailMessage.created_at, MailMessage.id)
    ).all()
    holds = session.scalars(
        select(InvoiceHold)
        .where(InvoiceHold.invoice_id.in_([i.id for i in invoices]))
        .order_by(InvoiceHold.created_at, InvoiceHold.id)
    ).all()
    number = {i.id: i.number or i.source_id for i in invoices}
    contacts = session.scalars(select(Contact).where(Contact.customer_id == customer.id)).all()
    return {
        "business": {"name": company.name, "currency": company.home_currency},
        "customer": {
            "name": customer.name,
            "ledger_id": customer.source_id,
            "contacts": [{"name": c.name, "email": c.email, "phone": c.phone} for c in contacts],
        },
        "invoices": [
            {
                "number": number[i.id],
                "issued_on": i.issued_on.isoformat(),
                "due_on": i.due_on.isoformat(),
                "currency": i.currency,
                "total": str(i.total.amount),
                "balance": str(i.balance.amount),
                "status": i.status,
            }
            for i in invoices
        ],
        "messages_sent": [
            {
                "sent_at": m.created_at.isoformat(),
                "to": m.to_addr,
                "subject": m.subject,
                "message_id": m.message_id,
                "text": m.text_body,
            }
            for m in mails
        ],
        "replies": [
            {
                "at": h.created_at.isoformat(),
                "invoice": number.get(h.invoice_id),
                "kind": h.kind,
                "promised_on": h.promised_on.isoformat() if h.promised_on else None,
                "message": h.message,
                "resolution": h.resolution,
            }
            for h in holds
        ],
    }
