"""Ledger write-backs: a collected payment, its early-payment discount, and restatements after
money went back or came back, each written into the company's ledger from an outbox row with
the row's key as the ledger's idempotency key, so a retry after a crash is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.connectors.base import (
    DiscountWriteBack,
    LedgerConnector,
    PaymentLine,
    PaymentWriteBack,
)
from arbridge.errors import AuthExpired, NotFound, Rejected, Transient
from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    CollectedPayment,
    Connection,
    Customer,
    Invoice,
    OutboxMessage,
)
from arbridge.sync.outbox_kinds import OutboxKind
from arbridge.sync.records import InvoiceData
from arbridge.sync.runner import mapper_for

log = logging.getLogger(__name__)


# Refit a refused write-back to what the ledger still has outstanding (payments.refunds owns it):
# (runtime, outbox row id, outstanding by invoice source id) -> the lines to post, or None.
Refit = Callable[[Runtime, int, Mapping[str, Decimal]], list[dict[str, str]] | None]


def post_ledger_payment(rt: Runtime, message: OutboxMessage, refit_to_ledger: Refit) -> str | None:
    """Write a collected payment into the company's ledger, with the outbox key as idempotency key.

    A ledger that refuses the payment because an invoice has less outstanding than we apply (the
    bookkeeper recorded a cheque while the customer was on the checkout) gets what still fits;
    the rest becomes an overpayment the owner can refund (`refit_to_ledger`, which bootstrap
    passes in from services.payments.refunds), so no money collected is left outside both the
    ledger and the owner's overpayments."""
    p = message.payload
    with rt.sessions() as session:
        conn = session.get(Connection, p["connection_id"])
    if conn is None:
        raise NotFound(f"connection {p['connection_id']} no longer exists")
    connector = rt.connector_for(conn)
    if "refit" in p:  # decided on an earlier attempt: post exactly that
        return _post_refit(connector, message.key, p, p["refit"])
    lines = [(li["invoice_source_id"], Decimal(li["amount"])) for li in p["lines"]]
    try:
        return connector.post_payment(_write_back(message.key, p, lines, Decimal(p["amount"])))
    except Rejected as refused:
        outstanding = ledger_outstanding(conn, connector, [i for i, _ in lines])
        if all(amount <= outstanding.get(i, Decimal(0)) for i, amount in lines):
            raise  # refused for another reason: a person has to look at it
        log.warning("ledger refused %s (%s); applying what still fits", message.key, refused)
        refit = refit_to_ledger(rt, message.id, outstanding)
        if refit is None:
            raise  # not a payment arbridge collected
        return _post_refit(connector, message.key, p, refit)


def _write_back(
    key: str, p: dict[str, Any], lines: list[tuple[str, Decimal]], amount: Decimal | None = None
) -> PaymentWriteBack:
    return PaymentWriteBack(
        idempotency_key=key,
        customer_source_id=p["customer_source_id"],
        currency=p["currency"],
        amount=amount if amount is not None else sum((a for _, a in lines), Decimal(0)),
        received_on=date.fromisoformat(p["received_on"]),
        reference=p["reference"],
        lines=[PaymentLine(i, a) for i, a in lines],
    )


def _post_refit(
    connector: LedgerConnector, key: str, p: dict[str, Any], refit: list[dict[str, str]]
) -> str | None:
    lines = [(li["invoice_source_id"], Decimal(li["amount"])) for li in refit]
    if not lines:
        return None  # nothing fits: all of it is an overpayment, nothing goes to the ledger
    # A key of its own (the first one was refused) that does not depend on what was read, so a
    # retry after a crash finds the payment already posted instead of posting another.
    return str(connector.post_payment(_write_back(f"{key}:refit", p, lines)))


def ledger_outstanding(
    conn: Connection, connector: LedgerConnector, invoice_source_ids: list[str]
) -> dict[str, Decimal]:
    """What the ledger says is outstanding on these invoices now (gone or voided: nothing)."""
    mapper = mapper_for(conn.provider)
    found: dict[str, Decimal] = {}
    for rec in connector.read_invoices(invoice_source_ids):
        mapped = mapper("invoices", rec.source_id, rec.deleted, rec.raw)
        if isinstance(mapped, InvoiceData) and mapped.status == "open":
            found[rec.source_id] = mapped.balance.amount
    return found


def _connection(rt: Runtime, connection_id: int) -> Connection:
    with rt.sessions() as session:
        conn = session.get(Connection, connection_id)
    if conn is None:
        raise NotFound(f"connection {connection_id} no longer exists")
    return conn


def post_ledger_discount(rt: Runtime, message: OutboxMessage) -> str | None:
    p = message.payload
    if not p["lines"]:
        return None  # its payment found the invoices settled in the ledger: nothing to credit
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
        if write is None or write.kind != OutboxKind.LEDGER_REVERSAL:
            return False  # this one is not in the payment's chain (a row queued long ago)
        if write.status not in ("pending", "sending"):
            return True
        latest = write.payload.get("after")
    return False


class NotInLedger(Exception):
    """The payment's write-back never reached the ledger: there is nothing there to restate."""


def _decide(rt: Runtime, outbox_id: int, stands: list[dict[str, int]]) -> list[dict[str, int]]:
    """Keep on the restatement's row what it is about to post, before posting: a retry posts the
    same (its repost key would return the first post anyway), and a sync knows what the ledger
    shows of the payment once it landed, until the next restatement lands."""
    with transaction(rt.sessions) as s:
        row = s.get(OutboxMessage, outbox_id, with_for_update=True, populate_existing=True)
        assert row is not None
        if "stated" in row.payload:
            return list(row.payload["stated"])
        row.payload = {**row.payload, "stated": stands}
    return stands


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
        decided = "stated" in p or payment is None or "root" not in p
        stands = (
            p.get("stated", p.get("repost", []))
            if decided
            else [
                {"invoice_id": a.invoice_id, "amount_minor": a.amount_minor}
                for a in sorted(payment.allocations, key=lambda a: a.invoice_id)
            ]
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
    if not decided:
        stands = _decide(rt, message.id, stands)
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
