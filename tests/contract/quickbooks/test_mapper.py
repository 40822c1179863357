"""The QuickBooks mapper on payloads in Intuit's documented shapes (tests/fixtures/quickbooks),
parsed as the connector parses them: parse_float=Decimal."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from arbridge.errors import MappingError
from arbridge.money import Money
from arbridge.sync.mappers.quickbooks import map_record
from arbridge.sync.records import Allocation, Deleted

FIXTURES = Path(__file__).parents[2] / "fixtures" / "quickbooks"


def load(name: str, entity: str):
    data = json.loads((FIXTURES / name).read_text(), parse_float=Decimal)
    return data[entity]


def test_an_open_invoice():
    raw = load("invoice_open.json", "Invoice")
    inv = map_record("invoices", "130", False, raw)
    assert inv.source_id == "130" and inv.customer_source_id == "24"
    assert (inv.number, inv.issued_on, inv.due_on) == (
        "1037",
        date(2026, 9, 19),
        date(2026, 10, 19),
    )
    assert inv.total == Money(Decimal("310.77"), "USD")
    assert inv.balance == Money(Decimal("210.77"), "USD")
    assert (inv.status, inv.terms, inv.exchange_rate) == ("open", "Net 30", Decimal(1))
    assert [line["amount"] for line in inv.lines] == ["275.0", "12.75"]  # no subtotal line
    assert inv.source_version == "3"
    assert inv.source_updated_at == datetime(2026, 10, 2, 16, 10, 44, tzinfo=UTC)


def test_a_voided_invoice():
    inv = map_record("invoices", "131", False, load("invoice_voided.json", "Invoice"))
    assert (inv.status, inv.total.amount, inv.balance.amount) == ("voided", 0, 0)


def test_a_foreign_currency_invoice_keeps_its_rate():
    inv = map_record("invoices", "145", False, load("invoice_foreign.json", "Invoice"))
    assert inv.currency == "EUR" and inv.exchange_rate == Decimal("1.0842")
    # Intuit's own HomeBalance agrees with multiplying by ExchangeRate.
    assert inv.balance.convert(inv.exchange_rate, "USD") == Money(Decimal("867.36"), "USD")


def test_a_payment_allocated_to_two_invoices():
    pay = map_record("payments", "152", False, load("payment_two_invoices.json", "Payment"))
    assert pay.amount == Money(Decimal("150.00"), "USD")
    assert pay.unapplied == Money(Decimal("10.00"), "USD")
    assert pay.allocations == (
        Allocation("130", Money(Decimal("100"), "USD")),
        Allocation("133", Money(Decimal("40"), "USD")),
    )
    assert (pay.status, pay.reference, pay.method) == ("closed", "1203", "Check")


def test_a_voided_payment_allocates_nothing():
    pay = map_record("payments", "153", False, load("payment_voided.json", "Payment"))
    assert pay.status == "voided" and pay.allocations == ()


def test_an_inactive_customer_with_its_contact():
    cust = map_record("customers", "67", False, load("customer_inactive.json", "Customer"))
    assert (cust.name, cust.active, cust.currency) == ("Bill's Windsurf Shop", False, "USD")
    [contact] = cust.contacts
    assert (contact.name, contact.email, contact.phone) == (
        "Bill Lucchini",
        "Surf@Intuit.com",
        "(415) 444-6538",
    )


def test_a_credit_memo_with_credit_left():
    memo = map_record("credit_notes", "73", False, load("creditmemo_open.json", "CreditMemo"))
    assert (memo.total.amount, memo.remaining.amount, memo.status) == (100, 60, "open")


def test_a_cdc_deletion_stub():
    stub = load("cdc_deleted.json", "CDCResponse")[0]["QueryResponse"][0]["Invoice"][0]
    assert map_record("invoices", "134", False, stub) == Deleted("134")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"TotalAmt": 1.5}, "arrived as a float"),
        ({"TotalAmt": Decimal("10.001")}, "more digits"),
        ({"CurrencyRef": None}, "CurrencyRef"),
        ({"CustomerRef": {}}, "CustomerRef"),
        ({"Balance": Decimal("999")}, "outside"),
        ({"TxnDate": "19/09/2026"}, "not a date"),
        ({"ExchangeRate": Decimal("0")}, "positive exchange rate"),
    ],
)
def test_a_malformed_invoice_is_a_mapping_error(change, message):
    raw = {**load("invoice_open.json", "Invoice"), **change}
    with pytest.raises(MappingError, match=message):
        map_record("invoices", "130", False, raw)
