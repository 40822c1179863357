"""Payments collected by arbridge written into Xero once: PUT /Payments with an Idempotency-Key,
batches of 50, refusals, deletion (Xero's reversal) and early-payment discounts."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from arbridge.connectors.base import DiscountWriteBack, PaymentLine, PaymentWriteBack
from arbridge.connectors.xero import idempotency_key
from arbridge.errors import Rejected
from tests.contract.xero.conftest import TODAY


def payment(key: str, *lines: tuple[str, str]) -> PaymentWriteBack:
    return PaymentWriteBack(
        idempotency_key=key,
        customer_source_id="",
        currency="NZD",
        amount=sum((Decimal(a) for _, a in lines), Decimal(0)),
        received_on=TODAY,
        reference="pi_3QxY7sLkdIwHu7ix0abc",
        lines=[PaymentLine(i, Decimal(a)) for i, a in lines],
    )


def writes(fake, method="PUT", path="/api.xro/2.0/Payments"):
    return [r for r in fake.requests if r["method"] == method and r["path"] == path]


@pytest.fixture
def two_invoices(fake):
    contact = fake.add_contact("Harbor Cafe")
    return [
        fake.add_invoice(contact, "120.10", issued=TODAY, due=TODAY),
        fake.add_invoice(contact, "80.00", issued=TODAY, due=TODAY),
    ]


def test_a_payment_over_two_invoices_is_two_xero_payments_in_one_request(fake, xero, two_invoices):
    a, b = two_invoices
    ids = xero.post_payment(payment("ledger_payment:pi_1", (a, "120.10"), (b, "30.05")))
    assert len(ids.split(",")) == 2
    assert fake.store["Invoices"][a]["Status"] == "PAID"
    assert fake.store["Invoices"][b]["AmountDue"] == Decimal("49.95")
    [request] = writes(fake)
    assert request["headers"]["Idempotency-Key"] == "ledger_payment:pi_1"
    assert request["headers"]["Xero-Tenant-Id"] == fake.tenant_id
    # Exact decimal literals on the wire: the amount never passed through a float.
    assert '"Amount": 120.10' in request["body"] and '"Amount": 30.05' in request["body"]
    body = json.loads(request["body"])["Payments"][0]
    assert body["Account"] == {"Code": "090"} and body["Date"] == "2026-11-24"
    assert body["Reference"] == "pi_3QxY7sLkdIwHu7ix0abc"


def test_a_write_whose_answer_was_lost_is_retried_and_pays_once(fake, xero, two_invoices, sleeps):
    a, _ = two_invoices
    fake.injected = [("lose_response",)]  # Xero records it, the answer never arrives
    first = xero.post_payment(payment("ledger_payment:pi_2", (a, "20.00")))
    assert sleeps == [1.0] and len(writes(fake)) == 2
    assert len(fake.live_payments()) == 1
    assert fake.store["Invoices"][a]["AmountDue"] == Decimal("100.10")
    # A rerun after a crash (the outbox sends it again): the same key, the same payment.
    again = xero.post_payment(payment("ledger_payment:pi_2", (a, "20.00")))
    assert again == first and len(fake.live_payments()) == 1


def test_more_than_outstanding_is_refused_and_nothing_is_paid(fake, xero, two_invoices):
    a, b = two_invoices
    with pytest.raises(Rejected, match="exceeds the amount outstanding"):
        xero.post_payment(payment("ledger_payment:pi_3", (a, "20.00"), (b, "80.01")))
    assert fake.live_payments() == []
    assert fake.store["Invoices"][a]["AmountDue"] == Decimal("120.10")


def test_no_payment_account_is_refused_before_calling_xero(fake, make_connector, two_invoices):
    xero = make_connector(payment_account=None)
    with pytest.raises(Rejected, match="no Xero account"):
        xero.post_payment(payment("k", (two_invoices[0], "1.00")))
    assert writes(fake) == []


def test_batches_of_fifty_each_with_a_key_of_their_own(fake, xero):
    contact = fake.add_contact("Harbor Cafe")
    invoices = [fake.add_invoice(contact, "10.00", issued=TODAY, due=TODAY) for _ in range(120)]
    items = [
        {
            "Invoice": {"InvoiceID": i},
            "Account": {"Code": "090"},
            "Date": "2026-11-24",
            "Amount": Decimal("10.00"),
        }
        for i in invoices
    ]
    items[7]["Amount"] = Decimal("10.01")  # one refused: the others still go in
    created = xero.put_payments(items, "batch:2026-11-24", atomic=False)
    requests = writes(fake)
    assert [len(json.loads(r["body"])["Payments"]) for r in requests] == [50, 50, 20]
    assert [r["headers"]["Idempotency-Key"] for r in requests] == [
        "batch:2026-11-24:0",
        "batch:2026-11-24:1",
        "batch:2026-11-24:2",
    ]
    assert all("summarizeErrors=false" in r["query"] for r in requests)
    assert len(fake.live_payments()) == 119 and len(created) == 120
    assert [
        p["ValidationErrors"][0]["Message"] for p in created if p.get("HasValidationErrors")
    ] == ["Payment amount exceeds the amount outstanding on this document"]


def test_a_refusal_in_a_later_request_deletes_what_the_earlier_ones_created(fake, xero):
    """51 lines are two requests; Xero takes the first and refuses the second. The payment is
    refused as a whole, so the first request's payments are deleted again; a retry (same key)
    is refused the same and deletes nothing more."""
    contact = fake.add_contact("Harbor Cafe")
    invoices = [fake.add_invoice(contact, "10.00", issued=TODAY, due=TODAY) for _ in range(51)]
    lines = [(i, "10.00") for i in invoices[:50]] + [(invoices[50], "10.01")]
    for _attempt in range(2):
        with pytest.raises(Rejected, match="exceeds the amount outstanding"):
            xero.post_payment(payment("ledger_payment:pi_6", *lines))
        assert fake.live_payments() == []
        assert all(fake.store["Invoices"][i]["AmountDue"] == Decimal("10.00") for i in invoices)
    assert [len(json.loads(r["body"])["Payments"]) for r in writes(fake)] == [50, 1, 50, 1]
    deleted = [r["path"] for r in fake.requests if r["method"] == "POST"]
    assert len(deleted) == len(set(deleted)) == 50


def test_deleting_a_payment_reopens_its_invoices_and_is_safe_twice(fake, xero, two_invoices):
    a, b = two_invoices
    ids = xero.post_payment(payment("ledger_payment:pi_4", (a, "120.10"), (b, "80.00")))
    xero.reverse_payment(ids, "ledger_reversal:pi_4:1")
    assert fake.live_payments() == []
    assert [fake.store["Invoices"][i]["Status"] for i in (a, b)] == ["AUTHORISED", "AUTHORISED"]
    assert fake.store["Invoices"][a]["AmountDue"] == Decimal("120.10")
    deletes = [r for r in fake.requests if r["method"] == "POST" and "/Payments/" in r["path"]]
    assert len(deletes) == 2 and json.loads(deletes[0]["body"]) == {"Status": "DELETED"}
    xero.reverse_payment(ids, "ledger_reversal:pi_4:1")  # already deleted: nothing more
    xero.reverse_payment("00000000-0000-0000-0000-000000000000", "k")  # unknown: nothing
    assert len([r for r in fake.requests if r["method"] == "POST"]) == 2


def test_an_early_payment_discount_is_a_credit_note_allocated(fake, xero, two_invoices):
    a, _ = two_invoices
    contact = fake.store["Invoices"][a]["Contact"]["ContactID"]
    note = xero.post_discount(
        DiscountWriteBack(
            idempotency_key="ledger_discount:pi_5",
            customer_source_id=contact,
            currency="NZD",
            issued_on=TODAY,
            reference="pi_5",
            lines=[PaymentLine(a, Decimal("2.40"))],
        )
    )
    assert fake.store["CreditNotes"][note]["RemainingCredit"] == Decimal("0.00")
    assert fake.store["Invoices"][a]["AmountDue"] == Decimal("117.70")
    keys = [r["headers"].get("Idempotency-Key") for r in fake.requests if r["method"] == "PUT"]
    assert keys == ["ledger_discount:pi_5:memo", "ledger_discount:pi_5:apply"]


def test_long_keys_are_hashed_to_xeros_limit():
    assert idempotency_key("k" * 128) == "k" * 128
    hashed = idempotency_key("k" * 129)
    assert len(hashed) <= 128 and hashed == idempotency_key("k" * 129)
