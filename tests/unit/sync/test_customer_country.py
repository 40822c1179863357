"""The customer's country from the ledger's address (ISO 3166 alpha-2): the country a phone
number written without its +code is read in. QuickBooks writes it free-form in BillAddr;
Xero in each address, the billing (POBOX) one first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbridge.sync.mappers.common import country_code
from arbridge.sync.mappers.quickbooks import map_customer
from arbridge.sync.mappers.xero import map_contact

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.mark.parametrize(
    ("written", "code"),
    [
        ("US", "US"),
        ("us", "US"),
        ("USA", "US"),
        ("U.S.A.", "US"),
        ("United States", "US"),
        ("United Kingdom", "GB"),
        ("UK", "GB"),
        ("  new   zealand ", "NZ"),
        ("Deutschland", None),  # not an English name: the business's country is used
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_a_written_country_becomes_its_code(written, code):
    assert country_code(written) == code


def test_a_quickbooks_customer_s_billing_country():
    raw = json.loads((FIXTURES / "quickbooks" / "customer_inactive.json").read_text())
    customer = raw.get("Customer", raw)
    assert map_customer({**customer, "BillAddr": {"Country": "Canada"}}).country == "CA"
    assert map_customer({**customer, "BillAddr": {"City": "Leeds"}}).country is None


def test_a_xero_contact_s_country_from_the_spec_s_example():
    page = json.loads((FIXTURES / "xero" / "contact_spec_page.json").read_text())
    contact = page["Contacts"][0]
    assert map_contact(contact).country == "US"  # its POBOX (billing) address
    street_only = [
        {"AddressType": "STREET", "Country": "Australia"},
        {"AddressType": "POBOX", "Country": ""},
    ]
    assert map_contact({**contact, "Addresses": street_only}).country == "AU"
