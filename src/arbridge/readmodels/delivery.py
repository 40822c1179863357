"""Invoices issued but never sent, as the dashboard lists them: two queries, whatever the count."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, String, cast, func, literal, select
from sqlalchemy.orm import Session

from arbridge.sync.model import Customer, Invoice, OutboxMessage
from arbridge.sync.outbox_kinds import OutboxKind


@dataclass(frozen=True)
class UnsentRow:
    invoice: Invoice
    customer: str
    sending: str | None  # the send's outbox state: pending, sending, failed, dead; None: not asked
    problem: str | None  # why it could not be sent


@dataclass(frozen=True)
class Unsent:
    rows: list[UnsentRow]  # the oldest first, at most the limit
    count: int  # all of them


def unsent_invoices(s: Session, company_id: int, limit: int = 10) -> Unsent:
    """Open invoices the ledger says were never sent and arbridge has not sent, oldest issued
    first, each with the state of its send when one was asked for."""
    found = s.execute(unsent_query(company_id).limit(limit)).all()
    count = s.scalar(unsent_count_query(company_id))
    return Unsent(
        [
            UnsentRow(
                inv,
                name,
                status,
                _reason(error) if status in ("failed", "dead", "maybe_sent") else None,
            )
            for inv, name, status, error in found
        ],
        count or 0,
    )


def unsent_query(company_id: int) -> Select[Any]:
    """The unsent invoices in issue order with their customers' names and their sends' states:
    read in order from `ix_invoices_unsent` (its WHERE is `is_unsent`'s own terms)."""
    send_key = literal(f"{OutboxKind.INVOICE_SEND.value}:") + cast(Invoice.id, String)
    return (
        select(Invoice, Customer.name, OutboxMessage.status, OutboxMessage.last_error)
        .join(Customer, Customer.id == Invoice.customer_id)
        .outerjoin(OutboxMessage, OutboxMessage.key == send_key)
        .where(Invoice.company_id == company_id, Invoice.is_unsent)
        .order_by(Invoice.issued_on, Invoice.id)
    )


def unsent_count_query(company_id: int) -> Select[Any]:
    """How many there are: the length of `ix_invoices_unsent`'s range for the company."""
    return select(func.count()).where(Invoice.company_id == company_id, Invoice.is_unsent)


def _reason(error: str | None) -> str | None:
    """The outbox's reason for the owner: without the error's class name ("Rejected: ...")."""
    if error is None:
        return None
    return re.sub(r"^[A-Z]\w+: ", "", error, count=1)
