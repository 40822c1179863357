"""QuickBooks Online records (Intuit's JSON, parsed with parse_float=Decimal) -> receivables model.

Quirks, from Intuit's documentation:
- a voided invoice, payment or credit memo stays, with its amounts set to 0 and "Voided"
  prefixed to PrivateNote (API reference, e.g.
  https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/payment);
- CDC returns deleted records as stubs {"status": "Deleted", "Id", "MetaData"}
  (https://developer.intuit.com/app/developer/qbo/docs/learn/explore-the-quickbooks-online-api/change-data-capture);
- ExchangeRate is home-currency units per unit of the transaction currency (multiply), which is
  the model's own convention; it is absent for home-currency documents (rate 1)
  (https://developer.intuit.com/app/developer/qbo/docs/workflows/manage-multiple-currencies);
- a Payment's lines name the invoices (and credit memos) they settle in LinkedTxn;
- an Invoice's EmailStatus says whether QuickBooks emailed it: NotSet (never asked to),
  NeedToSend (marked to send, not sent yet) or EmailSent (the Invoice entity's reference; the
  send operation, POST /invoice/<id>/send, sets EmailSent and DeliveryInfo).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arbridge.errors import MappingError
from arbridge.money import Money
from arbridge.sync.mappers.common import (
    country_code,
    field,
    parse_currency,
    parse_date,
    parse_instant,
    parse_money,
    parse_rate,
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


def _meta(raw: Mapping[str, Any]) -> dict[str, Any]:
    meta = raw.get("MetaData") or {}
    return {
        "source_version": str(raw["SyncToken"]) if raw.get("SyncToken") is not None else None,
        "source_updated_at": parse_instant(meta.get("LastUpdatedTime")),
    }


def _ref(raw: Mapping[str, Any], name: str) -> str:
    ref = field(raw, name)
    if not isinstance(ref, Mapping) or ref.get("value") in (None, ""):
        raise MappingError(f"field {name!r} names no record")
    return str(ref["value"])


def _currency(raw: Mapping[str, Any]) -> str:
    ref = raw.get("CurrencyRef")
    if not isinstance(ref, Mapping) or not ref.get("value"):
        raise MappingError("field 'CurrencyRef' is missing")
    return parse_currency(ref, "value")


def _voided(raw: Mapping[str, Any]) -> bool:
    return str(raw.get("PrivateNote") or "").startswith("Voided")


def _id(raw: Mapping[str, Any]) -> str:
    return str(field(raw, "Id"))


def map_customer(raw: Mapping[str, Any]) -> CustomerData:
    email = (raw.get("PrimaryEmailAddr") or {}).get("Address")
    phone = (raw.get("PrimaryPhone") or {}).get("FreeFormNumber")
    person = " ".join(p for p in (raw.get("GivenName"), raw.get("FamilyName")) if p) or None
    contacts = ()
    if email or phone:
        contacts = (ContactData(f"{_id(raw)}:primary", person, email, phone),)
    currency_ref = raw.get("CurrencyRef")
    name = raw.get("DisplayName") or raw.get("CompanyName") or raw.get("FullyQualifiedName")
    return CustomerData(
        source_id=_id(raw),
        name=str(name or "").strip() or "(no name)",
        currency=_currency(raw) if currency_ref else None,
        active=raw.get("Active", True) is not False,
        contacts=contacts,
        country=country_code((raw.get("BillAddr") or raw.get("ShipAddr") or {}).get("Country")),
        **_meta(raw),
    )


def _lines(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    lines = []
    for li in raw.get("Line") or []:
        if li.get("DetailType") != "SalesItemLineDetail":
            continue  # subtotal, discount and group lines restate the item lines
        detail = li.get("SalesItemLineDetail") or {}
        lines.append(
            {
                "description": li.get("Description") or (detail.get("ItemRef") or {}).get("name"),
                "quantity": str(detail["Qty"]) if detail.get("Qty") is not None else None,
                "unit_amount": str(detail["UnitPrice"])
                if detail.get("UnitPrice") is not None
                else None,
                "amount": str(li["Amount"]) if li.get("Amount") is not None else None,
            }
        )
    return lines


# EmailStatus -> sent to the customer? Any other value (or none) says nothing: None.
EMAIL_STATUS_SENT = {"EmailSent": True, "NeedToSend": False, "NotSet": False}


def map_invoice(raw: Mapping[str, Any]) -> InvoiceData:
    currency = _currency(raw)
    total = parse_money(raw, "TotalAmt", currency)
    balance = parse_money(raw, "Balance", currency)
    if balance.amount < 0 or balance > total:
        raise MappingError(f"balance {balance} is outside 0..{total}")
    issued_on = parse_date(raw, "TxnDate")
    due_on = parse_date(raw, "DueDate") if raw.get("DueDate") else issued_on
    if _voided(raw):
        status = "voided"
    elif balance.amount == 0:
        status = "paid"
    else:
        status = "open"
    return InvoiceData(
        source_id=_id(raw),
        customer_source_id=_ref(raw, "CustomerRef"),
        number=raw.get("DocNumber"),
        issued_on=issued_on,
        due_on=due_on,
        exchange_rate=parse_rate(raw, "ExchangeRate"),
        total=total,
        balance=balance,
        status=status,
        terms=(raw.get("SalesTermRef") or {}).get("name"),
        lines=_lines(raw),
        sent=EMAIL_STATUS_SENT.get(str(raw.get("EmailStatus"))),
        **_meta(raw),
    )


def _allocations(raw: Mapping[str, Any], currency: str) -> tuple[Allocation, ...]:
    """Each line's amount, to the invoice it names. A line that names a credit memo records
    credit used against those invoices; the credit memo's own RemainingCredit already shows it."""
    lines = raw.get("Line") or []
    if not isinstance(lines, list):
        raise MappingError("field 'Line' is not a list")
    amounts: dict[str, Money] = {}
    for line in lines:
        amount = parse_money(line, "Amount", currency)
        for linked in line.get("LinkedTxn") or []:
            if linked.get("TxnType") != "Invoice":
                continue
            invoice = str(field(linked, "TxnId"))
            amounts[invoice] = amounts.get(invoice, Money.zero(currency)) + amount
    return tuple(Allocation(i, a) for i, a in amounts.items())


def map_payment(raw: Mapping[str, Any]) -> PaymentData:
    currency = _currency(raw)
    amount = parse_money(raw, "TotalAmt", currency)
    unapplied = (
        parse_money(raw, "UnappliedAmt", currency)
        if raw.get("UnappliedAmt") is not None
        else Money.zero(currency)
    )
    voided = _voided(raw)
    return PaymentData(
        source_id=_id(raw),
        customer_source_id=_ref(raw, "CustomerRef"),
        received_on=parse_date(raw, "TxnDate"),
        exchange_rate=parse_rate(raw, "ExchangeRate"),
        amount=amount,
        unapplied=unapplied,
        status="voided" if voided else "closed",
        reference=(raw.get("PaymentRefNum") or None),
        method=(raw.get("PaymentMethodRef") or {}).get("name"),
        allocations=() if voided else _allocations(raw, currency),
        **_meta(raw),
    )


def map_credit_memo(raw: Mapping[str, Any]) -> CreditNoteData:
    currency = _currency(raw)
    total = parse_money(raw, "TotalAmt", currency)
    remaining = (
        parse_money(raw, "RemainingCredit", currency)
        if raw.get("RemainingCredit") is not None
        else total
    )
    status = "voided" if _voided(raw) else "open" if remaining.amount > 0 else "closed"
    return CreditNoteData(
        source_id=_id(raw),
        customer_source_id=_ref(raw, "CustomerRef"),
        number=raw.get("DocNumber"),
        issued_on=parse_date(raw, "TxnDate"),
        exchange_rate=parse_rate(raw, "ExchangeRate"),
        total=total,
        remaining=remaining,
        status=status,
        **_meta(raw),
    )


MAPPERS = {
    "customers": map_customer,
    "invoices": map_invoice,
    "payments": map_payment,
    "credit_notes": map_credit_memo,
}


def map_record(entity: str, source_id: str, deleted: bool, raw: Mapping[str, Any]) -> Mapped:
    if deleted or raw.get("status") == "Deleted":
        return Deleted(source_id)
    return MAPPERS[entity](raw)
