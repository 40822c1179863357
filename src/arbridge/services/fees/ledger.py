"""Each charge's own invoice in the ledger, and voiding it when the owner waives the charge:
outbox handlers, each call carrying the row's key as the ledger's idempotency key (QuickBooks
requestid, Xero Idempotency-Key, the demo ledger's table), so a retry after a crash never makes
a second invoice."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

from sqlalchemy import select

from arbridge.connectors.base import FeeInvoiceWriteBack
from arbridge.errors import NotFound, Transient
from arbridge.runtime import Runtime
from arbridge.sync.db import transaction
from arbridge.sync.model import Connection, LateFeeAssessment, OutboxMessage

log = logging.getLogger(__name__)


def _connection(rt: Runtime, connection_id: int) -> Connection:
    with rt.sessions() as session:
        conn = session.get(Connection, connection_id)
    if conn is None:
        raise NotFound(f"connection {connection_id} no longer exists")
    return conn


def post_fee_invoice(rt: Runtime, message: OutboxMessage) -> str | None:
    """Create the charge's invoice in the ledger and note its id on the assessment. A charge
    waived before its invoice was made is not made at all."""
    p = message.payload
    with rt.sessions() as session:
        found = session.get(LateFeeAssessment, p["assessment_id"])
        if found is None or found.status == "waived":
            return None
    ref = rt.connector_for(_connection(rt, p["connection_id"])).post_fee_invoice(
        FeeInvoiceWriteBack(
            idempotency_key=message.key,
            customer_source_id=p["customer_source_id"],
            currency=p["currency"],
            amount=Decimal(p["amount"]),
            issued_on=date.fromisoformat(p["issued_on"]),
            due_on=date.fromisoformat(p["due_on"]),
            description=p["description"],
            reference=p["reference"],
        )
    )
    with transaction(rt.sessions) as session:
        row = session.get(LateFeeAssessment, p["assessment_id"], with_for_update=True)
        if row is not None:
            row.ledger_ref = ref
            if row.status == "queued":
                row.status = "posted"
    return ref


def void_fee_invoice(rt: Runtime, message: OutboxMessage) -> str | None:
    """Void a waived charge's ledger invoice, once the write that made it has finished."""
    p = message.payload
    with rt.sessions() as session:
        post = session.scalar(select(OutboxMessage).where(OutboxMessage.key == p["post_key"]))
        row = session.get(LateFeeAssessment, p["assessment_id"])
    if post is None or row is None:
        return None
    if post.status in ("pending", "sending"):
        # Waived while its invoice is on its way: it is voided once it lands (or never made).
        raise Transient(f"{post.key} has not finished; voiding after it")
    ledger_id = row.ledger_ref or (post.provider_ref if post.status == "sent" else None)
    if not ledger_id:
        return None  # never made in the ledger: nothing to void
    rt.connector_for(_connection(rt, p["connection_id"])).void_invoice(ledger_id, message.key)
    return ledger_id
