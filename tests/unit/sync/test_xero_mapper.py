"""The Xero mapper on the response examples of Xero's own OpenAPI spec (tests/fixtures/xero),
parsed as the connector parses them: parse_float=Decimal."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbridge.errors import MappingError
from arbridge.money import Money
from arbridge.sync.mappers.xero import map_record, parse_day, parse_instant
from arbridge.sync.records import (
    Allocation,
    CreditNoteData,
    CustomerData,
    Deleted,
    InvoiceData,
    PaymentData,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "xero"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(), parse_float=Decimal)


def page(name: str, key: str) -> dict[str, dict[str, Any]]:
    return {r[next(k for k in r if k.endswith("ID"))]: r for r in load(name)[key]}


def nzd(amount: str) -> Money:
    return Money(Decimal(amount), "NZD")


# -- dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "day"),
    [
        ("/Date(1539993600000+0000)/", date(2018, 10, 20)),
        ("/Date(1580515200000+0000)/", date(2020, 2, 1)),
        ("/Date(1571875200000)/", date(2019, 10, 24)),
        # Written in an NZ offset: the day is the one it was written on, not UTC's.
        ("/Date(1571830200000+1300)/", date(2019, 10, 24)),
        ("2018-10-20T00:00:00", date(2018, 10, 20)),
        ("2018-10-20", date(2018, 10, 20)),
    ],
)
def test_xero_dates(value, day):
    assert parse_day({"Date": value}, "Date") == day


@pytest.mark.parametrize(
    "value", ["/Date(abc)/", "20/10/2018", "/Date(99999999999999999)/", "0001-01-01", 1539993600]
)
def test_a_bad_date_is_a_mapping_error(value):
    with pytest.raises(MappingError):
        parse_day({"Date": value}, "Date")


def test_update_times_are_utc_instants():
    expected = datetime(2018, 11, 2, 16, 31, 30, 160000, tzinfo=UTC)
    assert parse_instant("/Date(1541176290160+0000)/") == expected
    assert parse_instant("2018-11-02T16:31:30.16Z") == expected
    # UpdatedDateUTC is UTC by name, written without a zone by some clients.
    assert parse_instant("2018-11-02T16:31:30.16") == expected
    assert parse_instant(None) is None


# -- invoices ---------------------------------------------------------------------------------


def test_the_spec_invoice_page():
    raws = page("invoice_spec_page.json", "Invoices")
    out = {i: map_record("invoices", i, False, r) for i, r in raws.items()}
    voided = out["d4956132-ed94-4dd7-9eaa-aa22dfdf06f2"]
    paid = out["046d8a6d-1ae1-4b4d-9340-5601bdf41b87"]
    open_ = out["7ef31b20-de17-4312-8382-412f869b1510"]
    assert all(isinstance(v, InvoiceData) for v in out.values())
    assert (voided.status, voided.total, voided.balance) == ("voided", nzd("40.00"), nzd("0"))
    assert (paid.status, paid.total, paid.balance) == ("paid", nzd("46.00"), nzd("0"))
    assert (open_.status, open_.total, open_.balance) == ("open", nzd("115.00"), nzd("115.00"))
    assert open_.customer_source_id == "a3675fc4-f8dd-4f03-ba5b-f1870566bcd7"
    assert (open_.number, open_.issued_on, open_.due_on) == (
        "INV-0003",
        date(2018, 11, 2),
        date(2018, 11, 7),
    )
    assert open_.exchange_rate == 1
    assert open_.source_updated_at == datetime(2018, 11, 2, 16, 37, 28, 927000, tzinfo=UTC)
    assert open_.source_version == "/Date(1541176648927+0000)/"


def test_payments_invoice_has_its_line_items():
    raw = load("payment_spec_created.json")["Payments"][0]["Invoice"]
    inv = map_record("invoices", raw["InvoiceID"], False, raw)
    assert inv.balance == nzd("229.00") and inv.total == nzd("230.00")
    assert inv.lines == [
        {"description": "boo", "quantity": "1.0000", "unit_amount": "200.00", "amount": "200.00"}
    ]


def test_currency_rate_is_inverted_into_the_models_direction():
    """Xero's CurrencyRate is document units per one base unit (API_FACTS: "1 NZD = 0.9371 AUD");
    the model multiplies a document amount by its rate to reach the home currency."""
    cases = load("invoice_foreign.json")
    aud = map_record("invoices", "x", False, cases["nz_org_aud"])
    assert aud.currency == "AUD"
    # QU-0001: an NZ organisation, AUD at 0.937053: 937.05 AUD is 1,000.00 NZD, not 878.07.
    assert aud.balance.convert(aud.exchange_rate, "NZD") == Money(Decimal("1000.00"), "NZD")
    usd = map_record("invoices", "y", False, cases["us_org_nzd"])
    # QU-0007: a US organisation, NZD at 1.547150: 154.72 NZD is 100.00 USD, not 239.38.
    assert usd.total.convert(usd.exchange_rate, "USD") == Money(Decimal("100.00"), "USD")
    assert usd.due_on == date(2020, 3, 2)
    assert usd.source_updated_at == datetime(2020, 2, 1, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "tombstone"),
    [
        ({"Type": "ACCPAY"}, True),  # a bill: not a receivable
        ({"Status": "DRAFT"}, True),  # not owed yet
        ({"Status": "SUBMITTED"}, True),
        ({"Status": "DELETED"}, True),  # Xero deletes drafts only
        ({"Status": "AUTHORISED"}, False),
    ],
)
def test_what_is_not_a_receivable_is_a_tombstone(change, tombstone):
    raw = {**page("invoice_spec_page.json", "Invoices")["7ef31b20-de17-4312-8382-412f869b1510"]}
    out = map_record("invoices", raw["InvoiceID"], False, {**raw, **change})
    assert isinstance(out, Deleted) == tombstone
    if tombstone:
        assert out == Deleted("7ef31b20-de17-4312-8382-412f869b1510")


@pytest.mark.parametrize(
    "change",
    [
        {"Status": "ARCHIVED"},  # a status we do not know
        {"AmountDue": Decimal("116.00")},  # more due than the total
        {"AmountDue": Decimal("-1")},
        {"AmountDue": 115.0},  # a float: precision was lost on the way
        {"AmountDue": Decimal("1.005")},  # more digits than NZD has
        {"CurrencyCode": "XXY"},
        {"CurrencyRate": Decimal(0)},
        {"Contact": {}},
        {"Contact": "a3675fc4"},
        {"Date": "yesterday"},
        {"LineItems": "boo"},
        {"InvoiceID": None},
    ],
)
def test_a_malformed_invoice_is_a_mapping_error(change):
    raw = page("invoice_spec_page.json", "Invoices")["7ef31b20-de17-4312-8382-412f869b1510"]
    with pytest.raises(MappingError):
        map_record("invoices", "7ef31b20", False, {**raw, **change})


def test_a_record_that_is_not_an_object_is_a_mapping_error():
    with pytest.raises(MappingError):
        map_record("invoices", "1", False, ["not", "an", "invoice"])  # type: ignore[arg-type]


def test_a_deleted_flag_is_a_tombstone_whatever_the_payload():
    assert map_record("payments", "p1", True, {}) == Deleted("p1")


# -- payments ---------------------------------------------------------------------------------


def test_the_spec_payment_page():
    raws = page("payment_spec_page.json", "Payments")
    pay = map_record("payments", "99ea", False, raws["99ea7f6b-c513-4066-bc27-b7c65dcd76c2"])
    assert isinstance(pay, PaymentData)
    assert pay.source_id == "99ea7f6b-c513-4066-bc27-b7c65dcd76c2"
    assert (pay.amount, pay.unapplied, pay.status) == (nzd("46.00"), nzd("0"), "closed")
    assert pay.received_on == date(2018, 11, 29)
    assert pay.customer_source_id == "a3675fc4-f8dd-4f03-ba5b-f1870566bcd7"
    assert pay.allocations == (Allocation("046d8a6d-1ae1-4b4d-9340-5601bdf41b87", nzd("46.00")),)
    assert pay.exchange_rate == 1
    # A cash refund of credit note CN-0005: it shows in the credit's RemainingCredit instead.
    refund = raws["6b037c9b-2e5d-4905-84d3-eabfb3438242"]
    assert map_record("payments", "6b03", False, refund) == Deleted(refund["PaymentID"])


def test_a_deleted_payment_is_a_tombstone():
    raw = {**page("payment_spec_page.json", "Payments")["99ea7f6b-c513-4066-bc27-b7c65dcd76c2"]}
    raw["Status"] = "DELETED"
    assert map_record("payments", "x", False, raw) == Deleted(raw["PaymentID"])
    # The spec's own delete example is a supplier credit's payment: no receivable either way.
    spec = load("payment_spec_deleted.json")["Payments"][0]
    assert isinstance(map_record("payments", "y", False, spec), Deleted)


def test_a_payment_without_its_invoice_currency_is_a_mapping_error():
    raw = page("payment_spec_page.json", "Payments")["99ea7f6b-c513-4066-bc27-b7c65dcd76c2"]
    broken = {**raw, "Invoice": {**raw["Invoice"], "CurrencyCode": None}}
    with pytest.raises(MappingError):
        map_record("payments", "x", False, broken)


# -- credit notes, overpayments, prepayments --------------------------------------------------


def test_the_spec_credit_note_page():
    raws = page("creditnote_spec_page.json", "CreditNotes")
    cn = map_record("credit_notes", "x", False, raws["249f15fa-f2a7-4acc-8769-0984103f2225"])
    assert isinstance(cn, CreditNoteData)
    assert (cn.number, cn.total, cn.remaining, cn.status) == (
        "CN-0005",
        nzd("34.50"),
        nzd("32.50"),
        "open",
    )
    assert cn.issued_on == date(2019, 3, 5)
    # A supplier's credit note (ACCPAYCREDIT, and a draft): not a receivable.
    supplier = raws["f8021bd2-9a6a-4c19-8477-163da0b9290f"]
    assert isinstance(map_record("credit_notes", "y", False, supplier), Deleted)


def test_credit_note_allocations_skip_deleted_ones():
    cn = map_record("credit_notes", "x", False, load("creditnote_allocated.json"))
    assert cn.remaining == nzd("22.50")
    assert cn.allocations == (Allocation("7ef31b20-de17-4312-8382-412f869b1510", nzd("10.00")),)


def test_overpayments_are_credits_and_spend_ones_are_not_receivables():
    raws = page("overpayment_spec_page.json", "Overpayments")
    out = {i: map_record("credit_notes", i, False, r) for i, r in raws.items()}
    received = [v for v in out.values() if isinstance(v, CreditNoteData)]
    assert len(received) == 3 and len(out) == 5
    assert {(c.total, c.remaining, c.status, c.number) for c in received} == {
        (nzd("20.00"), nzd("20.00"), "open", None)
    }
    assert isinstance(out["098b4dcb-5622-4699-87f8-9d40c4ccceb3"], Deleted)  # SPEND-


def test_an_allocated_overpayment_is_closed():
    op = map_record("credit_notes", "x", False, load("overpayment_allocated.json"))
    assert (op.source_id, op.status, op.remaining) == (
        "2a8bda49-8908-473b-8bcf-1f90990460eb",
        "closed",
        nzd("0"),
    )
    assert op.allocations == (Allocation("7ef31b20-de17-4312-8382-412f869b1510", nzd("20.00")),)


def test_the_spec_prepayment():
    raw = load("prepayment_spec_page.json")["Prepayments"][0]
    pre = map_record("credit_notes", "x", False, raw)
    assert (pre.source_id, pre.total, pre.remaining, pre.status) == (
        "ce0cddef-cf5a-4e59-b638-f225679115a7",
        nzd("3450.00"),
        nzd("3450.00"),
        "open",
    )
    assert pre.customer_source_id == "be392c72-c121-4f83-9512-03ac71e54c20"


@pytest.mark.parametrize(
    "change",
    [
        {"RemainingCredit": Decimal("40.00")},  # more than the total
        {"Status": "PENDING"},
        {"CreditNoteID": None},  # names no id of any kind
        {"Allocations": [{"Amount": Decimal("1.00"), "Invoice": {}}]},
    ],
)
def test_a_malformed_credit_is_a_mapping_error(change):
    raw = page("creditnote_spec_page.json", "CreditNotes")["249f15fa-f2a7-4acc-8769-0984103f2225"]
    with pytest.raises(MappingError):
        map_record("credit_notes", "x", False, {**raw, **change})


# -- contacts ---------------------------------------------------------------------------------


def test_the_spec_contact_page():
    raws = page("contact_spec_page.json", "Contacts")
    kat = map_record("customers", "x", False, raws["5cc8cf28-567e-4d43-b287-687cfcaec47c"])
    assert isinstance(kat, CustomerData)
    assert (kat.name, kat.active, kat.currency) == ("Katherine Warren", True, None)
    [primary] = kat.contacts
    assert (primary.name, primary.email, primary.phone, primary.is_primary) == (
        "Katherine Warren",
        "kat.warren@clampett.com",
        "(626) 847-1294",
        True,
    )
    # Lisa is flagged neither customer nor supplier: still synced, an invoice may name her.
    lisa = map_record("customers", "y", False, raws["3ec601ad-eddc-4ccb-a8ac-736e88293b1b"])
    assert lisa.name == "Lisa Parker"


def test_an_archived_contact_stays_inactive_with_its_people():
    raw = {
        **page("contact_spec_page.json", "Contacts")["5cc8cf28-567e-4d43-b287-687cfcaec47c"],
        "ContactStatus": "ARCHIVED",
        "DefaultCurrency": "USD",
        "ContactPersons": [
            {"FirstName": "Ap", "LastName": "Clerk", "EmailAddress": "ap@clampett.com"},
            {"FirstName": "Kat", "EmailAddress": "KAT.WARREN@clampett.com"},  # the primary again
            {"FirstName": "No", "LastName": "Email"},
        ],
    }
    customer = map_record("customers", "x", False, raw)
    assert (customer.active, customer.currency) == (False, "USD")
    assert [(c.email, c.is_primary) for c in customer.contacts] == [
        ("kat.warren@clampett.com", True),
        ("ap@clampett.com", False),
    ]
    assert all(len(c.source_id) <= 64 for c in customer.contacts)
