"""Every kind of outbox row, and the one place each kind's key is built.

The kinds live here, beside the outbox, because sync queues some of them too (the owner's
email when a ledger needs reconnecting, the restatement chain it reads back); the service that
owns a kind registers its handler (`arbridge.services.bootstrap`). A key is the row's identity
(enqueue skips a key already queued), so each key is spelled once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.sync.model import Connection
from arbridge.sync.outbox import enqueue


class OutboxKind(StrEnum):
    # Ledger write-backs (services.ledger).
    LEDGER_PAYMENT = "ledger_payment"
    LEDGER_DISCOUNT = "ledger_discount"
    LEDGER_REVERSAL = "ledger_reversal"
    # Late fees and interest (services.fees): a charge's own ledger invoice, and its voiding.
    LEDGER_FEE_INVOICE = "ledger_fee_invoice"
    LEDGER_FEE_VOID = "ledger_fee_void"
    # Acts at the business's Stripe (services.payments).
    STRIPE_REFUND = "stripe_refund"
    STRIPE_EXPIRE_SESSION = "stripe_expire_session"
    # An installment charged off-session to a plan's saved payment method (services.payments).
    PLAN_CHARGE = "plan_charge"
    # Messages (services.messaging): reminders, statements, receipts, owner notices.
    EMAIL = "email"
    SMS = "sms"
    # An invoice sent to its customer through the ledger's own send (services.delivery).
    INVOICE_SEND = "invoice_send"


LEDGER_WRITES = (OutboxKind.LEDGER_PAYMENT, OutboxKind.LEDGER_DISCOUNT, OutboxKind.LEDGER_REVERSAL)
# Late-fee writes touch no collected payment (so the ledger lag ignores them), but go out again
# like the others once a dead grant is reconnected.
LEDGER_FEE_WRITES = (OutboxKind.LEDGER_FEE_INVOICE, OutboxKind.LEDGER_FEE_VOID)
# Sends through the ledger go out again too: the invoice is read before it is sent.
LEDGER_SENDS = (OutboxKind.INVOICE_SEND,)


def ledger_payment_key(payment_intent: str) -> str:
    return f"{OutboxKind.LEDGER_PAYMENT.value}:{payment_intent}"


def ledger_discount_key(payment_intent: str) -> str:
    return f"{OutboxKind.LEDGER_DISCOUNT.value}:{payment_intent}"


def ledger_reversal_prefix(payment_intent: str) -> str:
    """Restatements of one payment are numbered in order after this prefix."""
    return f"{OutboxKind.LEDGER_REVERSAL.value}:{payment_intent}:"


def fee_invoice_key(invoice_id: int, kind: str, period: str) -> str:
    """One late fee or interest charge: its assessment's unique key, (invoice, kind, period)."""
    return f"{OutboxKind.LEDGER_FEE_INVOICE.value}:{invoice_id}:{kind}:{period}"


def fee_void_key(invoice_id: int, kind: str, period: str) -> str:
    return f"{OutboxKind.LEDGER_FEE_VOID.value}:{invoice_id}:{kind}:{period}"


def invoice_send_key(invoice_id: int) -> str:
    """An invoice sent to its customer: once per invoice, whoever asked and however often."""
    return f"{OutboxKind.INVOICE_SEND.value}:{invoice_id}"


def invoice_email_key(invoice_id: int) -> str:
    """arbridge's own email of an invoice the ledger could not send."""
    return f"invoice_email:{invoice_id}"


def stripe_refund_key(payment_intent: str, number: int) -> str:
    return f"{OutboxKind.STRIPE_REFUND.value}:{payment_intent}:overpayment:{number}"


def stripe_expire_key(session_id: str) -> str:
    return f"stripe_expire:{session_id}"


def owner_mail_key(company_id: int, about: str) -> str:
    """An email to a company's owner about one thing (once per thing)."""
    return f"owner:{company_id}:{about}"


def receipt_key(payment_intent: str) -> str:
    return f"receipt:{payment_intent}"


# --- Typed payloads: what a row of each kind carries (stored as JSON, amounts as strings) -------
@dataclass(frozen=True)
class LedgerPayment:
    """A collected payment to write into the ledger."""

    connection_id: int
    customer_source_id: str
    currency: str
    amount: Decimal
    received_on: date
    reference: str
    lines: tuple[tuple[str, Decimal], ...]  # (invoice source id, amount)

    kind = OutboxKind.LEDGER_PAYMENT

    def to_json(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "customer_source_id": self.customer_source_id,
            "currency": self.currency,
            "amount": str(self.amount),
            "received_on": self.received_on.isoformat(),
            "reference": self.reference,
            "lines": [{"invoice_source_id": i, "amount": str(a)} for i, a in self.lines],
        }


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
    return LedgerPayment(
        conn.id, customer_source_id, currency, amount, received_on, reference, tuple(lines)
    ).to_json()


@dataclass(frozen=True)
class LedgerDiscount:
    """An early-payment discount to credit in the ledger (a credit memo / credit note)."""

    connection_id: int
    customer_source_id: str
    currency: str
    issued_on: date
    reference: str
    lines: tuple[tuple[str, Decimal], ...]  # (invoice source id, amount)

    kind = OutboxKind.LEDGER_DISCOUNT

    def to_json(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "customer_source_id": self.customer_source_id,
            "currency": self.currency,
            "issued_on": self.issued_on.isoformat(),
            "reference": self.reference,
            "lines": [{"invoice_source_id": i, "amount": str(a)} for i, a in self.lines],
        }


@dataclass(frozen=True)
class LedgerReversal:
    """One restatement of a written-back payment: void what the write before left live
    (`after`; `root` is the payment's own write-back), then post `repost`."""

    connection_id: int
    root: str | None
    after: str | None
    repost: tuple[tuple[int, int], ...]  # (invoice id, amount in minor units)
    currency: str
    reference: str
    customer_source_id: str | None
    received_on: date

    kind = OutboxKind.LEDGER_REVERSAL

    def to_json(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "root": self.root,
            "after": self.after,
            "repost": [{"invoice_id": i, "amount_minor": m} for i, m in self.repost],
            "currency": self.currency,
            "reference": self.reference,
            "customer_source_id": self.customer_source_id,
            "received_on": self.received_on.isoformat(),
        }


@dataclass(frozen=True)
class LedgerFeeInvoice:
    """A late fee or interest charge to write into the ledger as an invoice of its own."""

    connection_id: int
    assessment_id: int
    customer_source_id: str
    currency: str
    amount: Decimal
    issued_on: date
    due_on: date
    description: str
    reference: str  # the original invoice's number

    kind = OutboxKind.LEDGER_FEE_INVOICE

    def to_json(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "assessment_id": self.assessment_id,
            "customer_source_id": self.customer_source_id,
            "currency": self.currency,
            "amount": str(self.amount),
            "issued_on": self.issued_on.isoformat(),
            "due_on": self.due_on.isoformat(),
            "description": self.description,
            "reference": self.reference,
        }


@dataclass(frozen=True)
class LedgerFeeVoid:
    """Void a waived charge's ledger invoice (`post_key`: the write that made it)."""

    connection_id: int
    assessment_id: int
    post_key: str

    kind = OutboxKind.LEDGER_FEE_VOID

    def to_json(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "assessment_id": self.assessment_id,
            "post_key": self.post_key,
        }


@dataclass(frozen=True)
class StripeRefund:
    """A refund of an overpayment at the business's Stripe; `earlier` are the keys of attempts
    that may have reached Stripe unknown to us (asked about before refunding again)."""

    company_id: int
    payment_intent: str
    amount_minor: int
    currency: str
    refunded_before: int
    earlier: tuple[str, ...] = ()

    kind = OutboxKind.STRIPE_REFUND

    def to_json(self) -> dict[str, Any]:
        return {
            "company_id": self.company_id,
            "payment_intent": self.payment_intent,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "refunded_before": self.refunded_before,
            "earlier": list(self.earlier),
        }


@dataclass(frozen=True)
class StripeExpireSession:
    """Close a Checkout Session another payment made unneeded."""

    company_id: int
    session_id: str

    kind = OutboxKind.STRIPE_EXPIRE_SESSION

    def to_json(self) -> dict[str, Any]:
        return {"company_id": self.company_id, "session_id": self.session_id}


Payload = (
    LedgerPayment
    | LedgerDiscount
    | LedgerReversal
    | LedgerFeeInvoice
    | LedgerFeeVoid
    | StripeRefund
    | StripeExpireSession
)


def queue(session: Session, clock: Clock, *, company_id: int, key: str, payload: Payload) -> bool:
    """Queue a typed side effect once per key (its kind comes with its payload)."""
    return enqueue(
        session,
        clock,
        company_id=company_id,
        kind=payload.kind.value,
        key=key,
        payload=payload.to_json(),
    )
