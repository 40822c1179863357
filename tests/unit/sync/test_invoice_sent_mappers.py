"""Whether the ledger sent each invoice to its customer, as each mapper reads it: QuickBooks'
EmailStatus, Xero's SentToContact and the demo ledger's sentToContact, on payloads in the
providers' own shapes (tests/fixtures), parsed with parse_float=Decimal as the connectors do."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbridge.sync.mappers import demo, quickbooks, xero

FIXTURES = Path(__file__).parents[2] / "fixtures"


def load(provider: str, name: str) -> Any:
    return json.loads((FIXTURES / provider / name).read_text(), parse_float=Decimal)


@pytest.mark.parametrize(
    ("fixture", "sent"),
    [
        ("invoice_open.json", False),  # EmailStatus NotSet: never asked to send
        ("invoice_need_to_send.json", False),  # marked to send, not sent yet
        ("invoice_email_sent.json", True),  # EmailSent, with DeliveryInfo
        ("invoice_no_email_status.json", None),  # the field left out: QuickBooks says nothing
    ],
)
def test_quickbooks_email_status(fixture, sent):
    raw = load("quickbooks", fixture)["Invoice"]
    assert quickbooks.map_record("invoices", raw["Id"], False, raw).sent is sent


def test_quickbooks_an_unknown_email_status_says_nothing_and_does_not_fail_the_invoice():
    raw = {**load("quickbooks", "invoice_open.json")["Invoice"], "EmailStatus": "SomethingNew"}
    inv = quickbooks.map_record("invoices", raw["Id"], False, raw)
    assert (inv.sent, inv.status) == (None, "open")


def test_xero_sent_to_contact():
    found = load("xero", "invoice_sent_to_contact.json")
    for case, sent in (("unsent", False), ("sent", True)):
        raw = found[case]
        assert xero.map_record("invoices", raw["InvoiceID"], False, raw).sent is sent
    # Left out of the answer (as in invoice_foreign.json): nothing known.
    raw = load("xero", "invoice_foreign.json")["nz_org_aud"]
    assert xero.map_record("invoices", raw["InvoiceID"], False, raw).sent is None


def test_xero_spec_examples():
    # The spec's own page: two sent, one answer without the field.
    page = load("xero", "invoice_spec_page.json")["Invoices"]
    assert [xero.map_record("invoices", r["InvoiceID"], False, r).sent for r in page] == [
        True,
        True,
        None,
    ]


def demo_invoice(**fields: Any) -> dict[str, Any]:
    return {
        "id": "INV1001",
        "invoiceNumber": "INV-1001",
        "contactId": "C100",
        "date": "2026-11-20",
        "dueDate": "2026-12-20",
        "currencyCode": "USD",
        "currencyRate": "1",
        "total": "150.00",
        "balance": "150.00",
        "status": "AUTHORISED",
        "lineItems": [],
        **fields,
    }


@pytest.mark.parametrize(("value", "sent"), [(True, True), (False, False), ("yes", None)])
def test_demo_sent_to_contact(value, sent):
    assert demo.map_invoice(demo_invoice(sentToContact=value)).sent is sent


def test_a_demo_ledger_from_before_delivery_says_nothing():
    assert demo.map_invoice(demo_invoice()).sent is None
