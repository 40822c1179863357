"""What a mapper produces: ledger records in the receivables model's own terms (no database)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from arbridge.money import Money


@dataclass(frozen=True)
class ContactData:
    source_id: str
    name: str | None
    email: str | None
    phone: str | None
    is_primary: bool = True
    # The ledger's record of consent to text this contact (None: the ledger keeps none).
    sms_consent: bool | None = None


@dataclass(frozen=True)
class CustomerData:
    source_id: str
    name: str
    currency: str | None
    active: bool
    deleted: bool = False
    source_version: str | None = None
    source_updated_at: datetime | None = None
    contacts: tuple[ContactData, ...] = ()
    country: str | None = None  # ISO 3166 alpha-2 of the customer's address, when known


@dataclass(frozen=True)
class InvoiceData:
    source_id: str
    customer_source_id: str
    number: str | None
    issued_on: date
    due_on: date
    exchange_rate: Decimal
    total: Money
    balance: Money
    status: str  # open / paid / voided / deleted
    terms: str | None = None
    lines: list[dict[str, Any]] | None = None
    source_version: str | None = None
    source_updated_at: datetime | None = None
    # Whether the ledger sent it to the customer (None: the ledger does not say).
    sent: bool | None = None

    @property
    def currency(self) -> str:
        return self.total.currency


@dataclass(frozen=True)
class Allocation:
    invoice_source_id: str
    amount: Money


@dataclass(frozen=True)
class PaymentData:
    source_id: str
    customer_source_id: str | None
    received_on: date
    exchange_rate: Decimal
    amount: Money
    unapplied: Money
    status: str  # closed / voided / deleted
    reference: str | None = None
    method: str | None = None
    allocations: tuple[Allocation, ...] = field(default=())
    source_version: str | None = None
    source_updated_at: datetime | None = None


@dataclass(frozen=True)
class CreditNoteData:
    source_id: str
    customer_source_id: str | None
    number: str | None
    issued_on: date
    exchange_rate: Decimal
    total: Money
    remaining: Money
    status: str  # open / closed / voided / deleted
    allocations: tuple[Allocation, ...] = field(default=())
    source_version: str | None = None
    source_updated_at: datetime | None = None


@dataclass(frozen=True)
class Deleted:
    """A tombstone: the ledger says this record is gone."""

    source_id: str


Mapped = CustomerData | InvoiceData | PaymentData | CreditNoteData | Deleted
