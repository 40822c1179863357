"""The dispatch tables: which code carries out each outbox kind and each webhook event type.

Each capability adds its entries here; the worker drains both tables on every tick.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.connectors.base import DiscountWriteBack, PaymentLine, PaymentWriteBack
from arbridge.errors import AuthExpired, NotFound, Rejected, Transient
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.sync.model import (
    CollectedPayment,
    Company,
    Connection,
    Customer,
    Invoice,
    OutboxMessage,
)
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


def _connection(rt: Runtime, connection_id: int) -> Connection:
    with rt.sessions() as session:
        conn = session.get(Connection, connection_id)
    if conn is None:
        raise NotFound(f"connection {connection_id} no longer exists")
    return conn


def post_ledger_discount(rt: Runtime, message: OutboxMessage) -> str:
    p = message.payload
    return rt.connector_for(_connection(rt, p["connection_id"])).post_discount(
        DiscountWriteBack(
            idempotency_key=message.key,
            customer_source_id=p["customer_source_id"],
            currency=p["currency"],
            issued_on=date.fromisoformat(p["issued_on"]),
            reference=p["reference"],
            lines=[
                PaymentLine(li["invoice_source_id"], Decimal(li["amount"])) for li in p["lines"]
            ],
        )
    )


def _live_before(session: Session, root_key: str | None, after: str | None) -> str | None:
    """The ledger id of the one payment the writes before this restatement left live (None:
    none). Raises Transient while the write just before has not finished, and NotInLedger when
    the payment's own write-back never reached the ledger."""
    if root_key is not None:
        root = session.scalar(select(OutboxMessage).where(OutboxMessage.key == root_key))
        if root is None or root.status in ("failed", "dead"):
            if root is not None and (root.last_error or "").startswith("AuthExpired"):
                # Held with the write-back: reconnecting queues both again, in order.
                raise AuthExpired(f"{root_key} is waiting for the ledger to be reconnected")
            raise NotInLedger(root_key)
    key = after
    while key is not None:
        write = session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
        if write is None:
            return None
        if write.status in ("pending", "sending"):
            raise Transient(f"{key} has not reached the ledger yet; restating after it lands")
        if write.status == "sent":
            return write.provider_ref
        # A restatement that gave up: whatever it voided stays voided, and it posted nothing
        # (a refused post is not written). Void what the one before it left; twice is harmless.
        if write.key == root_key:
            return None
        key = write.payload.get("after", write.payload.get("payment_key"))
    return None


def _superseded(session: Session, payment_intent: str, key: str) -> bool:
    """Has a later restatement of the same payment finished already? (It walked past this one
    when this one had given up; this one has since been queued again, say after a reconnect.)"""
    latest = session.scalar(
        select(CollectedPayment.ledger_key).where(
            CollectedPayment.payment_intent_id == payment_intent
        )
    )
    while latest is not None and latest != key:
        write = session.scalar(select(OutboxMessage).where(OutboxMessage.key == latest))
        if write is None or write.kind != "ledger_reversal":
            return False  # this one is not in the payment's chain (a row queued long ago)
        if write.status not in ("pending", "sending"):
            return True
        latest = write.payload.get("after")
    return False


class NotInLedger(Exception):
    """The payment's write-back never reached the ledger: there is nothing there to restate."""


def reverse_ledger_payment(rt: Runtime, message: OutboxMessage) -> str | None:
    """Restate a written-back payment after money went back (refund, dispute, ACH return) or
    came back (a dispute won): void the one ledger payment the previous write left live, then
    post what stands now. Returns the new ledger payment's id (None when nothing stands), which
    the next restatement voids. Void and post each carry a key of their own derived from this
    row's, so a retry repeats neither."""
    p = message.payload
    # Rows queued before restatements were chained name only the original write-back.
    root_key = p.get("root", p.get("payment_key"))
    after = p.get("after", root_key)
    with rt.sessions() as session:
        if _superseded(session, p["reference"], message.key):
            return None  # a later restatement already stated what stands: this one is stale
        try:
            live = _live_before(session, root_key, after)
        except NotInLedger:
            return None  # it never reached the ledger: nothing to undo, nothing to restate
        # What stands is what the payment's allocations say now, not when this row was queued:
        # a write-back refitted to the ledger meanwhile (an invoice settled there) moved some of
        # it to the overpayment. A later restatement, if any, voids this one's post in turn.
        payment = session.scalar(
            select(CollectedPayment).where(
                CollectedPayment.payment_intent_id == p["reference"],
                CollectedPayment.company_id == message.company_id,
            )
        )
        stands = (
            [
                {"invoice_id": a.invoice_id, "amount_minor": a.amount_minor}
                for a in sorted(payment.allocations, key=lambda a: a.invoice_id)
            ]
            if payment is not None and "root" in p
            else p.get("repost", [])
        )
        repost = [(session.get(Invoice, r["invoice_id"]), r["amount_minor"]) for r in stands]
        customer_source_id = p.get("customer_source_id")
        if customer_source_id is None and repost and repost[0][0] is not None:
            customer = session.get(Customer, repost[0][0].customer_id)
            customer_source_id = customer.source_id if customer else None
        received_on = p.get("received_on")
        if received_on is None and root_key is not None:
            root = session.scalar(select(OutboxMessage).where(OutboxMessage.key == root_key))
            received_on = root.payload.get("received_on") if root is not None else None
    connector = rt.connector_for(_connection(rt, p["connection_id"]))
    if live is not None:
        connector.reverse_payment(live, message.key)
    lines = [
        PaymentLine(inv.source_id, Money.from_minor(minor, p["currency"]).amount)
        for inv, minor in repost
        if inv is not None and minor > 0
    ]
    if not lines:
        return None
    if customer_source_id is None or received_on is None:
        raise Rejected(f"cannot restate {p['reference']}: its customer or date is unknown")
    return connector.post_payment(
        PaymentWriteBack(
            idempotency_key=f"{message.key}:repost",
            customer_source_id=customer_source_id,
            currency=p["currency"],
            amount=sum((line.amount for line in lines), Decimal(0)),
            received_on=date.fromisoformat(received_on),
            reference=p["reference"],
            lines=lines,
        )
    )


def stripe_refund(rt: Runtime, message: OutboxMessage) -> str:
    from arbridge.payments import gateway_for

    p = message.payload
    with rt.sessions() as session:
        company = session.get(Company, p["company_id"])
        gateway = gateway_for(rt, session, company) if company else None
    if gateway is None:
        raise Rejected("Stripe is no longer connected for this business")
    # An earlier attempt may have reached Stripe without our learning it (no answer, the worker
    # gave up): ask Stripe first, and make no second refund if one of them did.
    if p.get("earlier") and (found := gateway.find_refund(p["payment_intent"], p["earlier"])):
        return found
    return gateway.refund(
        p["payment_intent"], Money.from_minor(p["amount_minor"], p["currency"]), message.key
    )


def outbox_handlers(rt: Runtime) -> dict[str, Handler]:
    return {
        # Every ledger takes our key as an idempotency key (QuickBooks requestid, Xero
        # Idempotency-Key, the demo ledger's table), so a retry after a crash is safe.
        LEDGER_PAYMENT: Handler(lambda m: post_ledger_payment(rt, m), idempotent=True),
        "ledger_discount": Handler(lambda m: post_ledger_discount(rt, m), idempotent=True),
        "ledger_reversal": Handler(lambda m: reverse_ledger_payment(rt, m), idempotent=True),
        # Stripe takes the outbox key as its Idempotency-Key.
        "stripe_refund": Handler(lambda m: stripe_refund(rt, m), idempotent=True),
        # SMTP has no idempotency key: a crash mid-send marks the row failed, never resends.
        "email": Handler(lambda m: _send_email(rt, m), idempotent=False),
    }


def _send_email(rt: Runtime, message: OutboxMessage) -> str:
    from arbridge.remind import send_email  # reminders (issue 5)

    return send_email(rt, message)


STRIPE_EVENTS = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "payment_intent.processing",
    "payment_intent.payment_failed",
    "charge.refunded",
    "charge.dispute.created",
    "charge.dispute.closed",
    "charge.dispute.funds_reinstated",
)


def webhook_handlers(rt: Runtime) -> dict[tuple[str, str], EventHandler]:
    from arbridge.payments import handle_stripe_event

    handlers: dict[tuple[str, str], EventHandler] = {
        ("stripe", kind): lambda s, e: handle_stripe_event(rt, s, e) for kind in STRIPE_EVENTS
    }
    # QuickBooks events name a changed record: sync it in (issue 3).
    from arbridge.webhooks.quickbooks import handle_quickbooks_entity

    for name in ("Customer", "Invoice", "Payment", "CreditMemo"):
        handlers[("quickbooks", name)] = lambda s, e: handle_quickbooks_entity(s, e, rt.clock)
    return handlers
