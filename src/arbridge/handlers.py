"""The dispatch tables: which code carries out each outbox kind and each webhook event type.

Each capability adds its entries here; the worker drains both tables on every tick.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from arbridge.connectors.base import PaymentLine, PaymentWriteBack
from arbridge.errors import NotFound
from arbridge.runtime import Runtime
from arbridge.sync.model import Connection, OutboxMessage
from arbridge.sync.outbox import Handler
from arbridge.webhooks.dispatch import EventHandler

LEDGER_PAYMENT = "ledger_payment"


def ledger_payment_payload(
    conn: Connection,
    *,
    customer_source_id: str,
    currency: str,
    amount: Decimal,
    received_on: date,
    reference: str,
    lines: list[tuple[str, Decimal]],
) -> dict[str, Any]:
    """The outbox payload of a payment to write back into the ledger (amounts as strings)."""
    return {
        "connection_id": conn.id,
        "customer_source_id": customer_source_id,
        "currency": currency,
        "amount": str(amount),
        "received_on": received_on.isoformat(),
        "reference": reference,
        "lines": [{"invoice_source_id": i, "amount": str(a)} for i, a in lines],
    }


def post_ledger_payment(rt: Runtime, message: OutboxMessage) -> str:
    """Write a collected payment into the company's ledger, with the outbox key as idempotency key."""
    p = message.payload
    with rt.sessions() as session:
        conn = session.get(Connection, p["connection_id"])
    if conn is None:
        raise NotFound(f"connection {p['connection_id']} no longer exists")
    return rt.connector_for(conn).post_payment(
        PaymentWriteBack(
            idempotency_key=message.key,
            customer_source_id=p["customer_source_id"],
            currency=p["currency"],
            amount=Decimal(p["amount"]),
            received_on=date.fromisoformat(p["received_on"]),
            reference=p["reference"],
            lines=[
                PaymentLine(li["invoice_source_id"], Decimal(li["amount"])) for li in p["lines"]
            ],
        )
    )


def outbox_handlers(rt: Runtime) -> dict[str, Handler]:
    return {
        # Every ledger takes our key as an idempotency key (QuickBooks requestid, Xero
        # Idempotency-Key, the demo ledger's table), so a retry after a crash is safe.
        LEDGER_PAYMENT: Handler(lambda m: post_ledger_payment(rt, m), idempotent=True),
    }


def webhook_handlers(rt: Runtime) -> dict[tuple[str, str], EventHandler]:
    return {}
