"""Xero Accounting API records (Xero's JSON, parsed with parse_float=Decimal) -> receivables model.

Quirks, from Xero's OpenAPI spec (XeroAPI/Xero-OpenAPI, xero_accounting.yaml) and
../../../../../shared/API_FACTS.md:
- dates come as Microsoft JSON dates, `/Date(1539993600000+0000)/` (milliseconds since the epoch,
  then the offset they were written in), or as ISO strings (`DateString`, the SDK's output);
- `CurrencyRate` is units of the document's currency per one unit of the organisation's base
  currency (Xero shows "1 NZD = 0.9371 AUD"), the reverse of the model's convention (home units
  per one unit of the document's currency, multiply): the model's rate is 1 / CurrencyRate;
- only receivables count: ACCREC invoices, ACCRECCREDIT credit notes, RECEIVE- overpayments and
  prepayments, ACCRECPAYMENT payments. Anything else (bills, supplier credits, refunds paid out
  of a credit, drafts, deleted documents) maps to a tombstone, which removes a copy we hold and is
  a no-op otherwise;
- an invoice's `AmountDue` already nets its payments, credit notes, overpayments and
  prepayments; allocations are kept for the history, not to recompute balances;
- Xero deletes a payment by setting its Status to DELETED, and the record stays readable.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Context, Decimal
from typing import Any

from tzlocal.windows_tz import win_tz

from arbridge.errors import MappingError
from arbridge.inputs import EARLIEST_DAY, LATEST_DAY, InputError, check_day
from arbridge.money import Money
from arbridge.sync.mappers.common import (
    country_code,
    field,
    parse_currency,
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

MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
# 20 significant digits: amount x rate stays exact to the cent for any amount the model holds.
RATE_CONTEXT = Context(prec=20)

INVOICE_STATUS = {"AUTHORISED": "open", "PAID": "paid", "VOIDED": "voided"}
# Not owed (yet, or ever): a draft or submitted document, one deleted before approval.
NOT_RECEIVABLE_STATUSES = {"DRAFT", "SUBMITTED", "DELETED"}
CREDIT_STATUS = {"AUTHORISED": "open", "PAID": "closed", "VOIDED": "voided"}
RECEIVE_TYPES = {
    "CreditNoteID": {"ACCRECCREDIT"},
    "OverpaymentID": {"RECEIVE-OVERPAYMENT", "AROVERPAYMENT"},
    "PrepaymentID": {"RECEIVE-PREPAYMENT", "ARPREPAYMENT"},
}


# -- fields -----------------------------------------------------------------------------------


def _ms_date(value: str) -> datetime | None:
    """`/Date(ms+hhmm)/` -> the instant, in the zone it was written in; None if not that form."""
    match = MS_DATE.match(value.strip())
    if not match:
        return None
    ms, offset = match.groups()
    zone = UTC
    if offset:
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        zone = timezone(timedelta(minutes=minutes if offset[0] == "+" else -minutes))
    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).astimezone(zone)
    except (OverflowError, OSError, ValueError) as e:
        raise MappingError(f"not a date: {value!r}") from e


def parse_day(raw: Mapping[str, Any], name: str) -> date:
    """A Xero date field: `/Date(1539993600000+0000)/` or `2018-10-20[T00:00:00]`."""
    value = field(raw, name)
    if not isinstance(value, str):
        raise MappingError(f"field {name!r} is not a date: {value!r}")
    try:
        instant = _ms_date(value)
        day = instant.date() if instant else date.fromisoformat(value.strip()[:10])
        return check_day(day)
    except InputError as e:
        raise MappingError(
            f"field {name!r} is outside {EARLIEST_DAY}..{LATEST_DAY}: {value!r}"
        ) from e
    except ValueError as e:
        raise MappingError(f"field {name!r} is not a date: {value!r}") from e


def parse_instant(value: Any) -> datetime | None:
    """A Xero UTC timestamp (`UpdatedDateUTC`): a Microsoft JSON date or ISO, zone or not."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise MappingError(f"not a timestamp: {value!r}")
    instant = _ms_date(value)
    if instant is None:
        try:
            instant = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as e:
            raise MappingError(f"not a timestamp: {value!r}") from e
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)  # the field is UTC by name
    return instant.astimezone(UTC)


def home_rate(raw: Mapping[str, Any]) -> Decimal:
    """The model's rate (home units per one unit of the document's currency) from Xero's
    CurrencyRate (document units per one home unit): its inverse. Absent means 1."""
    return RATE_CONTEXT.divide(Decimal(1), parse_rate(raw, "CurrencyRate"))


def _object(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name) or {}
    if not isinstance(value, Mapping):
        raise MappingError(f"field {name!r} is not an object")
    return value


def _list(raw: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    value = raw.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise MappingError(f"field {name!r} is not a list of objects")
    return value


def _contact_id(raw: Mapping[str, Any]) -> str:
    return str(field(_object(raw, "Contact"), "ContactID"))


def _meta(raw: Mapping[str, Any]) -> dict[str, Any]:
    # Xero has no version counter: the update time changes on every edit, so it serves as one.
    updated = raw.get("UpdatedDateUTC")
    return {
        "source_version": str(updated)[:64] if updated not in (None, "") else None,
        "source_updated_at": parse_instant(updated),
    }


def _status(raw: Mapping[str, Any]) -> str:
    return str(field(raw, "Status"))


# -- records ----------------------------------------------------------------------------------


def _phone(raw: Mapping[str, Any]) -> str | None:
    phones = {str(p.get("PhoneType")): p for p in _list(raw, "Phones")}
    for kind in ("DEFAULT", "MOBILE", "DDI"):
        p = phones.get(kind) or {}
        if p.get("PhoneNumber"):
            parts = (p.get("PhoneCountryCode"), p.get("PhoneAreaCode"), p.get("PhoneNumber"))
            return " ".join(str(x).strip() for x in parts if x)[:40]
    return None


def _person(first: Any, last: Any) -> str | None:
    return " ".join(str(p).strip() for p in (first, last) if p) or None


def map_contact(raw: Mapping[str, Any]) -> CustomerData:
    """Every contact, archived ones too (their open invoices still count); a contact is a
    customer when an invoice names it, whatever its IsCustomer flag says."""
    contact_id = str(field(raw, "ContactID"))
    contacts: list[ContactData] = []
    email, phone = text(raw, "EmailAddress", 254), _phone(raw)
    if email or phone:
        name = _person(raw.get("FirstName"), raw.get("LastName"))
        contacts.append(ContactData(f"{contact_id}:primary", name, email, phone))
    seen = {email.lower()} if email else set()
    for person in _list(raw, "ContactPersons"):
        address = text(person, "EmailAddress", 254)
        if not address or address.lower() in seen:
            continue
        seen.add(address.lower())
        contacts.append(
            ContactData(
                # Stable across reorderings, and short enough for the 64-character column.
                f"{contact_id}:p:{hashlib.sha256(address.lower().encode()).hexdigest()[:16]}",
                _person(person.get("FirstName"), person.get("LastName")),
                address,
                None,
                is_primary=False,
            )
        )
    return CustomerData(
        source_id=contact_id,
        name=str(raw.get("Name") or "").strip() or "(no name)",
        currency=parse_currency(raw, "DefaultCurrency") if raw.get("DefaultCurrency") else None,
        # ARCHIVED and GDPRREQUEST contacts stay, inactive.
        active=raw.get("ContactStatus", "ACTIVE") == "ACTIVE",
        contacts=tuple(contacts),
        country=_country(raw),
        **_meta(raw),
    )


def _country(raw: Mapping[str, Any]) -> str | None:
    """The billing (POBOX) address's country, else the street address's."""
    by_type = {str(a.get("AddressType")): a for a in _list(raw, "Addresses")}
    for kind in ("POBOX", "STREET"):
        code = country_code((by_type.get(kind) or {}).get("Country"))
        if code:
            return code
    return None


def _lines(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "description": li.get("Description"),
            "quantity": str(li["Quantity"]) if li.get("Quantity") is not None else None,
            "unit_amount": str(li["UnitAmount"]) if li.get("UnitAmount") is not None else None,
            "amount": str(li["LineAmount"]) if li.get("LineAmount") is not None else None,
        }
        for li in _list(raw, "LineItems")
    ]


def map_invoice(raw: Mapping[str, Any]) -> InvoiceData | Deleted:
    source_id = str(field(raw, "InvoiceID"))
    status_raw = _status(raw)
    if field(raw, "Type") != "ACCREC" or status_raw in NOT_RECEIVABLE_STATUSES:
        return Deleted(source_id)  # a bill, a draft, or deleted before it was ever owed
    if status_raw not in INVOICE_STATUS:
        raise MappingError(f"unknown invoice status {status_raw!r}")
    currency = parse_currency(raw, "CurrencyCode")
    total = parse_money(raw, "Total", currency)
    status = INVOICE_STATUS[status_raw]
    if status == "voided" and raw.get("AmountDue") is None:
        balance = Money.zero(currency)
    else:
        balance = parse_money(raw, "AmountDue", currency)
    if balance.amount < 0 or balance > total:
        raise MappingError(f"balance {balance} is outside 0..{total}")
    if status == "open" and balance.amount == 0:
        status = "paid"
    issued_on = parse_day(raw, "Date")
    return InvoiceData(
        source_id=source_id,
        customer_source_id=_contact_id(raw),
        number=text(raw, "InvoiceNumber", 64),
        issued_on=issued_on,
        due_on=parse_day(raw, "DueDate") if raw.get("DueDate") else issued_on,
        exchange_rate=home_rate(raw),
        total=total,
        balance=balance,
        status=status,
        lines=_lines(raw),
        sent=_flag(raw, "SentToContact"),
        **_meta(raw),
    )


def _flag(raw: Mapping[str, Any], name: str) -> bool | None:
    """An optional boolean (Xero leaves SentToContact out of some answers): None when absent."""
    value = raw.get(name)
    return value if isinstance(value, bool) else None


def map_payment(raw: Mapping[str, Any]) -> PaymentData | Deleted:
    """A payment against one ACCREC invoice. Refunds paid out of a credit note, overpayment or
    prepayment (ARCREDITPAYMENT, ...) show in that credit's RemainingCredit instead."""
    source_id = str(field(raw, "PaymentID"))
    invoice = _object(raw, "Invoice")
    kind = raw.get("PaymentType")
    if (kind and kind != "ACCRECPAYMENT") or (invoice.get("Type") not in (None, "ACCREC")):
        return Deleted(source_id)
    if _status(raw) == "DELETED":
        return Deleted(source_id)  # Xero's way to reverse a payment: its invoice reopens
    currency = parse_currency(invoice, "CurrencyCode")
    amount = parse_money(raw, "Amount", currency)
    contact = _object(invoice, "Contact")
    return PaymentData(
        source_id=source_id,
        customer_source_id=str(contact["ContactID"]) if contact.get("ContactID") else None,
        received_on=parse_day(raw, "Date"),
        exchange_rate=home_rate(raw),
        amount=amount,
        unapplied=Money.zero(currency),
        status="closed",
        reference=text(raw, "Reference", 100),
        allocations=(Allocation(str(field(invoice, "InvoiceID")), amount),),
        **_meta(raw),
    )


def _allocations(raw: Mapping[str, Any], currency: str) -> tuple[Allocation, ...]:
    out: dict[str, Money] = {}
    for line in _list(raw, "Allocations"):
        if line.get("IsDeleted") is True:
            continue
        invoice = str(field(_object(line, "Invoice"), "InvoiceID"))
        out[invoice] = out.get(invoice, Money.zero(currency)) + parse_money(
            line, "Amount", currency
        )
    return tuple(Allocation(i, a) for i, a in out.items())


def map_credit(raw: Mapping[str, Any]) -> CreditNoteData | Deleted:
    """A credit note, overpayment or prepayment: each is credit the customer holds until it is
    allocated to invoices or paid back, so each is a credit note in the model."""
    id_field = next((k for k in RECEIVE_TYPES if raw.get(k)), None)
    if id_field is None:
        raise MappingError("names no CreditNoteID, OverpaymentID or PrepaymentID")
    source_id = str(raw[id_field])
    status_raw = _status(raw)
    if field(raw, "Type") not in RECEIVE_TYPES[id_field] or status_raw in NOT_RECEIVABLE_STATUSES:
        return Deleted(source_id)
    if status_raw not in CREDIT_STATUS:
        raise MappingError(f"unknown credit status {status_raw!r}")
    currency = parse_currency(raw, "CurrencyCode")
    total = parse_money(raw, "Total", currency)
    remaining = (
        parse_money(raw, "RemainingCredit", currency)
        if raw.get("RemainingCredit") is not None
        else total
    )
    if remaining.amount < 0 or remaining > total:
        raise MappingError(f"remaining credit {remaining} is outside 0..{total}")
    status = CREDIT_STATUS[status_raw]
    if status == "open" and remaining.amount == 0:
        status = "closed"
    return CreditNoteData(
        source_id=source_id,
        customer_source_id=_contact_id(raw),
        number=text(raw, "CreditNoteNumber", 64),
        issued_on=parse_day(raw, "Date"),
        exchange_rate=home_rate(raw),
        total=total,
        remaining=remaining,
        status=status,
        allocations=() if status == "voided" else _allocations(raw, currency),
        **_meta(raw),
    )


MAPPERS = {
    "customers": map_contact,
    "invoices": map_invoice,
    "payments": map_payment,
    "credit_notes": map_credit,
}


def map_record(entity: str, source_id: str, deleted: bool, raw: Mapping[str, Any]) -> Mapped:
    if deleted:
        return Deleted(source_id)
    if not isinstance(raw, Mapping):
        raise MappingError("the record is not an object")
    return MAPPERS[entity](raw)


# Xero names an organisation's timezone by its Windows id without spaces, upper case
# ("NEWZEALANDSTANDARDTIME"); CLDR's table (as tzlocal ships it) gives the IANA zone.
_WINDOWS_ZONES = {re.sub(r"[^A-Z0-9]", "", name.upper()): zone for name, zone in win_tz.items()}


def organisation_timezone(value: Any) -> str | None:
    """The IANA zone of an Organisation's Timezone, or None when it names none we know."""
    if not isinstance(value, str):
        return None
    return _WINDOWS_ZONES.get(re.sub(r"[^A-Z0-9]", "", value.upper()))
