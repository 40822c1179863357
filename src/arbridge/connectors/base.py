"""The interface every ledger connector (QuickBooks, Xero, the demo ledger) offers to sync/.

A connector returns records in the source's own shape (the raw payload, plus the few facts the
runner needs to page and to notice deletions); mapping into the receivables model is sync's job.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal, Protocol

Entity = Literal["customers", "invoices", "credit_notes", "payments"]
# Order matters: invoices name customers, payments and credits name invoices.
ENTITIES: tuple[Entity, ...] = ("customers", "invoices", "credit_notes", "payments")


class TokenSource(Protocol):
    """Where the connector gets its access token; implemented over the database by sync/."""

    def access_token(self) -> str: ...

    def refresh(self, stale: str) -> str:
        """A fresh access token, unless another worker already replaced `stale`."""
        ...

    def give_up(self, reason: str) -> None:
        """The grant is dead: mark the connection for reconnecting and tell the owner."""
        ...


@dataclass(frozen=True)
class SourceRecord:
    entity: Entity
    source_id: str
    deleted: bool
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class Page:
    """Records in a stable order, and the cursor that is safe to save once they are committed."""

    entity: Entity
    records: Sequence[SourceRecord]
    cursor: str | None
    total: int | None = None  # the number of records this pull will return, when the source says


@dataclass(frozen=True)
class PaymentLine:
    invoice_source_id: str
    amount: Decimal


@dataclass(frozen=True)
class PaymentWriteBack:
    """A payment arbridge collected, to record in the ledger once (keyed by idempotency_key)."""

    idempotency_key: str
    customer_source_id: str
    currency: str
    amount: Decimal
    received_on: date
    reference: str
    lines: Sequence[PaymentLine] = field(default_factory=tuple)


@dataclass(frozen=True)
class DiscountWriteBack:
    """An early-payment discount to record once (a credit note applied to each invoice)."""

    idempotency_key: str
    customer_source_id: str
    currency: str
    issued_on: date
    reference: str
    lines: Sequence[PaymentLine] = field(default_factory=tuple)


@dataclass(frozen=True)
class FeeInvoiceWriteBack:
    """A late fee or interest charge, to record once as an invoice of its own (the original
    invoice stays as the customer received it)."""

    idempotency_key: str
    customer_source_id: str
    currency: str
    amount: Decimal
    issued_on: date
    due_on: date
    description: str  # "Late fee on INV-1042", the one line
    reference: str  # the original invoice's number


@dataclass(frozen=True)
class InvoiceSend:
    """Have the ledger email one invoice to its customer, once (keyed by idempotency_key)."""

    idempotency_key: str
    invoice_source_id: str
    to: str | None = None  # the address to send to; None: the one the ledger holds


class LedgerConnector(Protocol):
    source: str

    def pull(self, entity: Entity, cursor: str | None) -> Iterator[Page]:
        """Every record changed after `cursor` (all of them when None), oldest change first."""
        ...

    def read_invoices(self, source_ids: Sequence[str]) -> list[SourceRecord]:
        """These invoices as the ledger has them now (ones it no longer has may be left out)."""
        ...

    def post_payment(self, payment: PaymentWriteBack) -> str:
        """Record the payment in the ledger and return its id there; safe to call twice."""
        ...

    def reverse_payment(self, payment_id: str, idempotency_key: str) -> None:
        """Void (or delete) a payment posted earlier, reopening its invoices; safe to call twice."""
        ...

    def post_discount(self, discount: DiscountWriteBack) -> str:
        """Record an early-payment discount so the invoice closes at zero; safe to call twice."""
        ...

    def post_fee_invoice(self, fee: FeeInvoiceWriteBack) -> str:
        """Create a late fee or interest invoice and return its id there; safe to call twice."""
        ...

    def void_invoice(self, invoice_id: str, idempotency_key: str) -> None:
        """Void an invoice arbridge created (a waived fee); safe to call twice."""
        ...

    def send_invoice(self, send: InvoiceSend) -> str:
        """Email the invoice to its customer through the ledger, which then records it as sent;
        returns the ledger's reference. Safe to call twice: an invoice the ledger already shows
        as sent is not sent again. Raises Rejected when the ledger cannot send it."""
        ...

    def invoice_pdf(self, invoice_id: str) -> bytes | None:
        """The invoice as the ledger renders it, as PDF; None when the ledger renders none."""
        ...
