"""DemoBooks records -> receivables model records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arbridge.errors import MappingError
from arbridge.money import total
from arbridge.sync.mappers.common import (
    field,
    parse_currency,
    parse_date,
    parse_instant,
    parse_money,
    parse_rate,
    text,
)
from arbridge.sync.records import (
    Allocation,
    ContactData,
    CreditNoteData,
    CustomerData,
    Deleted,
    InvoiceData,
    Mapped,
    PaymentData,
)

INVOICE_STATUS = {"AUTHORISED": "open", "PAID": "paid", "VOIDED": "voided"}
DOCUMENT_STATUS = {"POSTED": "closed", "PAID": "closed", "AUTHORISED": "open", "VOIDED": "voided"}


def _meta(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "source_version": str(raw["version"])[:64] if raw.get("version") is not None else None,
        "source_updated_at": parse_instant(raw.get("updatedAt")),
    }


def _allocations(raw: Mapping[str, Any], currency: str) -> tuple[Allocation, ...]:
    applied = raw.get("applied") or []
    if not isinstance(applied, list) or not all(isinstance(a, Mapping) for a in applied):
        raise MappingError("field 'applied' is not a list of lines")
    return tuple(
        Allocation(str(field(line, "invoiceId")), parse_money(line, "amount", currency))
        for line in applied
    )


def _object(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, Mapping):
        raise MappingError(f"field {name!r} is not an object")
    return value


def map_customer(raw: Mapping[str, Any]) -> CustomerData:
    person = _object(raw, "contactPerson")
    contacts = ()
    if person.get("email") or person.get("phone"):
        contacts = (
            ContactData(
                source_id=f"{field(raw, 'id')}:primary",
                name=text(person, "firstName", 300),
                email=text(person, "email", 254),
                phone=text(person, "phone", 40),
                sms_consent=person.get("smsConsent") is True,
            ),
        )
    return CustomerData(
        source_id=str(field(raw, "id")),
        name=str(field(raw, "name")).strip() or "(no name)",
        currency=parse_currency(raw, "currencyCode") if raw.get("currencyCode") else None,
        active=bool(raw.get("isActive", True)),
        contacts=contacts,
        country=text(raw, "country", 2),
        **_meta(raw),
    )


def map_invoice(raw: Mapping[str, Any]) -> InvoiceData:
    currency = parse_currency(raw, "currencyCode")
    status_raw = field(raw, "status")
    if status_raw not in INVOICE_STATUS:
        raise MappingError(f"unknown invoice status {status_raw!r}")
    total = parse_money(raw, "total", currency)
    balance = parse_money(raw, "balance", currency)
    if balance.amount < 0 or balance > total:
        raise MappingError(f"balance {balance} is outside 0..{total}")
    issued_on = parse_date(raw, "date")
    due_on = parse_date(raw, "dueDate") if raw.get("dueDate") else issued_on
    status = INVOICE_STATUS[status_raw]
    if status == "open" and balance.amount == 0:
        status = "paid"
    return InvoiceData(
        source_id=str(field(raw, "id")),
        customer_source_id=str(field(raw, "contactId")),
        number=text(raw, "invoiceNumber", 64),
        issued_on=issued_on,
        due_on=due_on,
        exchange_rate=parse_rate(raw, "currencyRate"),
        total=total,
        balance=balance,
        status=status,
        terms=text(raw, "terms", 100),
        lines=_lines(raw),
        # Like Xero's SentToContact; a ledger written before it existed says nothing (None).
        sent=raw["sentToContact"] if isinstance(raw.get("sentToContact"), bool) else None,
        **_meta(raw),
    )


def _lines(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    items = raw.get("lineItems") or []
    if not isinstance(items, list) or not all(isinstance(li, Mapping) for li in items):
        raise MappingError("field 'lineItems' is not a list of lines")
    return [
        {
            "description": li.get("description"),
            "quantity": li.get("quantity"),
            "unit_amount": li.get("unitAmount"),
            "amount": li.get("lineAmount"),
        }
        for li in items
    ]


def map_payment(raw: Mapping[str, Any]) -> PaymentData:
    currency = parse_currency(raw, "currencyCode")
    amount = parse_money(raw, "amount", currency)
    allocations = _allocations(raw, currency)
    applied = total((a.amount for a in allocations), currency)
    status_raw = field(raw, "status")
    if status_raw not in DOCUMENT_STATUS:
        raise MappingError(f"unknown payment status {status_raw!r}")
    return PaymentData(
        source_id=str(field(raw, "id")),
        customer_source_id=str(raw["contactId"]) if raw.get("contactId") else None,
        received_on=parse_date(raw, "date"),
        exchange_rate=parse_rate(raw, "currencyRate"),
        amount=amount,
        unapplied=amount - applied,
        status=DOCUMENT_STATUS[status_raw],
        reference=text(raw, "reference", 100),
        method=text(raw, "method", 40),
        allocations=allocations,
        **_meta(raw),
    )


def map_credit_note(raw: Mapping[str, Any]) -> CreditNoteData:
    currency = parse_currency(raw, "currencyCode")
    status_raw = field(raw, "status")
    if status_raw not in DOCUMENT_STATUS:
        raise MappingError(f"unknown credit note status {status_raw!r}")
    return CreditNoteData(
        source_id=str(field(raw, "id")),
        customer_source_id=str(raw["contactId"]) if raw.get("contactId") else None,
        number=text(raw, "creditNoteNumber", 64),
        issued_on=parse_date(raw, "date"),
        exchange_rate=parse_rate(raw, "currencyRate"),
        total=parse_money(raw, "total", currency),
        remaining=parse_money(raw, "remainingCredit", currency),
        status=DOCUMENT_STATUS[status_raw],
        allocations=_allocations(raw, currency),
        **_meta(raw),
    )


MAPPERS = {
    "customers": map_customer,
    "invoices": map_invoice,
    "payments": map_payment,
    "credit_notes": map_credit_note,
}


def map_record(entity: str, source_id: str, deleted: bool, raw: Mapping[str, Any]) -> Mapped:
    if deleted:
        return Deleted(source_id)
    return MAPPERS[entity](raw)
