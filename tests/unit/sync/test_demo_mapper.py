from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from arbridge.errors import MappingError
from arbridge.money import Money
from arbridge.sync.mappers.demo import map_customer, map_invoice, map_payment, map_record
from arbridge.sync.records import Deleted

INVOICE = {
    "id": "INV1001",
    "invoiceNumber": "INV-1001",
    "contactId": "C100",
    "date": "2026-10-01",
    "dueDate": "2026-10-31",
    "currencyCode": "EUR",
    "currencyRate": "1.0842",
    "terms": "Net 30",
    "total": "1250.00",
    "balance": "625.50",
    "status": "AUTHORISED",
    "version": "3",
    "updatedAt": "2026-11-20T10:00:00+00:00",
    "lineItems": [
        {
            "description": "Installation",
            "quantity": 4,
            "unitAmount": "312.50",
            "lineAmount": "1250.00",
        }
    ],
}


def test_invoice_maps_into_model_terms():
    inv = map_invoice(INVOICE)
    assert inv.source_id == "INV1001" and inv.number == "INV-1001"
    assert inv.issued_on == date(2026, 10, 1) and inv.due_on == date(2026, 10, 31)
    assert inv.total == Money(Decimal("1250.00"), "EUR")
    assert inv.balance == Money(Decimal("625.50"), "EUR")
    assert inv.exchange_rate == Decimal("1.0842")
    assert inv.status == "open" and inv.source_version == "3"
    assert inv.source_updated_at == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert inv.lines[0]["amount"] == "1250.00"


def test_open_invoice_with_zero_balance_is_paid():
    assert map_invoice({**INVOICE, "balance": "0.00"}).status == "paid"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"total": None}, "total"),
        ({"balance": 12.5}, "float"),
        ({"balance": "abc"}, "not a number"),
        ({"balance": "2000.00"}, "outside"),
        ({"currencyCode": "ZZZ"}, "currency"),
        ({"date": "31/10/2026"}, "not a date"),
        ({"status": "WHATEVER"}, "status"),
        ({"currencyRate": "-1"}, "positive"),
        ({"balance": "1.001"}, "balance"),
    ],
)
def test_malformed_invoices_raise_mapping_error(change, message):
    raw = copy.deepcopy(INVOICE)
    raw.update(change)
    with pytest.raises(MappingError, match=message):
        map_invoice(raw)


def test_jpy_amounts_have_no_minor_digits():
    raw = {**INVOICE, "currencyCode": "JPY", "total": "125000", "balance": "125000"}
    assert map_invoice(raw).balance.minor == 125000


def test_payment_allocations_and_unapplied():
    pmt = map_payment(
        {
            "id": "PMT1",
            "contactId": "C100",
            "date": "2026-11-02",
            "currencyCode": "USD",
            "amount": "150.00",
            "status": "POSTED",
            "applied": [
                {"invoiceId": "INV1", "amount": "100.00"},
                {"invoiceId": "INV2", "amount": "20.00"},
            ],
        }
    )
    assert [a.invoice_source_id for a in pmt.allocations] == ["INV1", "INV2"]
    assert pmt.unapplied == Money(Decimal("30.00"), "USD")
    assert pmt.exchange_rate == Decimal(1)


def test_customer_with_contact():
    cust = map_customer(
        {
            "id": "C7",
            "name": " Harbor Bakery ",
            "currencyCode": "USD",
            "isActive": False,
            "contactPerson": {"firstName": "Ana", "email": "ana@harbor.example", "phone": "+1 555"},
        }
    )
    assert cust.name == "Harbor Bakery" and not cust.active
    assert cust.contacts[0].email == "ana@harbor.example"


def test_tombstones_map_to_deleted():
    assert map_record("invoices", "INV9", True, {"id": "INV9", "status": "DELETED"}) == Deleted(
        "INV9"
    )
