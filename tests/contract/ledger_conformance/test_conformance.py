"""What every ledger connector promises the sync runner and the write-backs (connectors/base.py),
checked the same way against each ledger in conftest.PROVIDERS.

Pages: every record once, oldest change first, a cursor on the last page that is safe to save.
An incremental pull from that cursor: what changed since, deletions as tombstones. Inactive
customers are seen. A payment written back reads back, and the same key writes it once; a
reversal reopens the invoice and is safe to repeat. Failures leave as our error kinds.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from arbridge.connectors.base import (
    FeeInvoiceWriteBack,
    InvoiceSend,
    Page,
    PaymentLine,
    PaymentWriteBack,
    SourceRecord,
)
from arbridge.errors import AuthExpired, RateLimited
from arbridge.sync.mappers import demo, quickbooks, xero
from tests.contract.ledger_conformance.conftest import LedgerUnderTest

MAPPERS = {"demo": demo.map_record, "quickbooks": quickbooks.map_record, "xero": xero.map_record}


def pull(ledger: LedgerUnderTest, entity, cursor=None, page_size=None) -> list[Page]:
    return list(ledger.connector(page_size).pull(entity, cursor))


def records(pages: list[Page]) -> list[SourceRecord]:
    return [r for page in pages for r in page.records]


def live_ids(pages: list[Page]) -> list[str]:
    return [r.source_id for r in records(pages) if not r.deleted]


def final_cursor(pages: list[Page], previous: str | None = None) -> str | None:
    """The cursor the runner saves: the last page's. A pull that found nothing may yield no
    page at all, and then the cursor stays where it was."""
    if not pages:
        return previous
    assert pages[-1].cursor, "the last page carries the cursor to save"
    return pages[-1].cursor


def seeded(ledger: LedgerUnderTest, invoices: int = 2) -> tuple[str, list[str]]:
    customer = ledger.add_customer("Harbor Bakery")
    due = ledger.today
    ids = [ledger.add_invoice(customer, f"{100 + 10 * i}.00", due) for i in range(invoices)]
    return customer, ids


def payment(ledger, customer, invoice, amount, key="conformance:pay:1") -> PaymentWriteBack:
    return PaymentWriteBack(
        idempotency_key=key,
        customer_source_id=customer,
        currency="USD",
        amount=Decimal(amount),
        received_on=ledger.today,
        reference="pi_conformance_1",
        lines=[PaymentLine(invoice, Decimal(amount))],
    )


def balance(ledger: LedgerUnderTest, invoice: str) -> Decimal:
    (found,) = ledger.connector().read_invoices([invoice])
    return ledger.balance_of(found.raw)


def test_pages_hold_every_record_once_and_the_last_one_the_cursor(ledger):
    names = [f"Customer {n}" for n in range(5)]
    ids = [ledger.add_customer(name) for name in names]
    pages = pull(ledger, "customers", page_size=2)
    assert len([p for p in pages if p.records]) >= 3  # paged, not one big answer
    assert sorted(live_ids(pages)) == sorted(ids)
    assert all(p.entity == "customers" for p in pages)
    assert final_cursor(pages)


def test_an_incremental_pull_returns_what_changed_after_the_cursor(ledger):
    _customer, (kept, changed) = seeded(ledger)
    ledger.tick()
    cursor = final_cursor(pull(ledger, "invoices"))
    ledger.tick()
    ledger.void_invoice(changed)
    ledger.tick()
    pages = pull(ledger, "invoices", cursor)
    assert live_ids(pages) == [changed]
    assert ledger.balance_of(records(pages)[0].raw) == 0
    # And from the new cursor: nothing more.
    ledger.tick()
    assert live_ids(pull(ledger, "invoices", final_cursor(pages))) == []
    assert kept not in live_ids(pages)


def test_inactive_customers_are_seen(ledger):
    active = ledger.add_customer("Maple Dental")
    inactive = ledger.add_customer("Summit Logistics", active=False)
    assert sorted(live_ids(pull(ledger, "customers"))) == sorted([active, inactive])


def test_a_deleted_invoice_comes_back_as_a_tombstone(ledger):
    _customer, (kept, deleted) = seeded(ledger)
    ledger.tick()
    cursor = final_cursor(pull(ledger, "invoices"))
    ledger.tick()
    ledger.delete_invoice(deleted)
    ledger.tick()
    found = records(pull(ledger, "invoices", cursor))
    assert [(r.source_id, r.deleted) for r in found] == [(deleted, True)]
    # Read back by id, a deleted invoice is left out or marked deleted; the live one is there.
    read = ledger.connector().read_invoices([kept, deleted])
    assert [r.source_id for r in read if not r.deleted] == [kept]


def test_a_payment_written_back_reads_back(ledger):
    customer, (invoice, _other) = seeded(ledger)
    ledger.tick()
    payments_cursor = final_cursor(pull(ledger, "payments"))
    invoices_cursor = final_cursor(pull(ledger, "invoices"))
    ledger.tick()
    payment_id = ledger.connector().post_payment(payment(ledger, customer, invoice, "40.00"))
    assert payment_id
    assert balance(ledger, invoice) == Decimal("60.00")
    ledger.tick()
    assert payment_id in live_ids(pull(ledger, "payments", payments_cursor))
    assert live_ids(pull(ledger, "invoices", invoices_cursor)) == [invoice]


def test_the_same_key_writes_a_payment_once(ledger):
    customer, (invoice, _other) = seeded(ledger)
    first = ledger.connector().post_payment(payment(ledger, customer, invoice, "25.00"))
    again = ledger.connector().post_payment(payment(ledger, customer, invoice, "25.00"))
    assert again == first
    assert balance(ledger, invoice) == Decimal("75.00")
    other = ledger.connector().post_payment(
        payment(ledger, customer, invoice, "25.00", key="conformance:pay:2")
    )
    assert other != first
    assert balance(ledger, invoice) == Decimal("50.00")


def test_a_reversal_reopens_the_invoice_and_is_safe_to_repeat(ledger):
    customer, (invoice, _other) = seeded(ledger)
    paid = ledger.connector().post_payment(payment(ledger, customer, invoice, "100.00"))
    assert balance(ledger, invoice) == 0
    ledger.connector().reverse_payment(paid, "conformance:reverse:1")
    ledger.connector().reverse_payment(paid, "conformance:reverse:1")
    assert balance(ledger, invoice) == Decimal("100.00")


def fee(ledger, customer, key="conformance:fee:1") -> FeeInvoiceWriteBack:
    return FeeInvoiceWriteBack(
        idempotency_key=key,
        customer_source_id=customer,
        currency="USD",
        amount=Decimal("25.00"),
        issued_on=ledger.today,
        due_on=ledger.today,
        description="Late fee on INV-1042",
        reference="INV-1042",
    )


def test_a_fee_invoice_is_written_once_per_key_and_reads_back(ledger):
    customer, _ids = seeded(ledger)
    ledger.tick()
    cursor = final_cursor(pull(ledger, "invoices"))
    ledger.tick()
    first = ledger.connector().post_fee_invoice(fee(ledger, customer))
    assert ledger.connector().post_fee_invoice(fee(ledger, customer)) == first
    ledger.tick()
    assert live_ids(pull(ledger, "invoices", cursor)) == [first]
    assert balance(ledger, first) == Decimal("25.00")
    other = ledger.connector().post_fee_invoice(fee(ledger, customer, "conformance:fee:2"))
    assert other != first


def test_voiding_a_fee_invoice_closes_it_and_is_safe_to_repeat(ledger):
    customer, _ids = seeded(ledger)
    made = ledger.connector().post_fee_invoice(fee(ledger, customer))
    ledger.connector().void_invoice(made, "conformance:void:1")
    ledger.connector().void_invoice(made, "conformance:void:1")
    assert balance(ledger, made) == 0


def sent(ledger: LedgerUnderTest, invoice: str) -> bool | None:
    """Whether the ledger says it sent the invoice, as the product's own mapper reads it."""
    (found,) = ledger.connector().read_invoices([invoice])
    return MAPPERS[ledger.name]("invoices", invoice, False, found.raw).sent


def test_an_invoice_is_emailed_once_and_reads_back_sent(ledger):
    customer, (invoice, other) = seeded(ledger)
    assert sent(ledger, invoice) is not True
    ask = InvoiceSend("conformance:send:1", invoice, f"ap@{customer}.example")
    assert ledger.connector().send_invoice(ask) == invoice
    ledger.connector().send_invoice(ask)  # retried under the same key
    ledger.connector().send_invoice(InvoiceSend("conformance:send:2", invoice))  # asked again
    assert ledger.emailed() == [invoice]
    assert sent(ledger, invoice) is True
    assert sent(ledger, other) is not True


def test_an_invoice_pdf_is_the_ledgers_own_or_none(ledger):
    _customer, (invoice, _other) = seeded(ledger)
    pdf = ledger.connector().invoice_pdf(invoice)
    if ledger.name == "demo":
        assert pdf is None  # DemoBooks renders no documents
    else:
        assert pdf.startswith(b"%PDF-")


def test_an_expired_access_token_is_renewed_without_the_caller_noticing(ledger):
    if ledger.expire_access_token is None:
        pytest.skip(f"{ledger.name} has no access tokens")
    customer = ledger.add_customer("Harbor Bakery")
    ledger.expire_access_token()
    assert live_ids(pull(ledger, "customers")) == [customer]


def test_a_revoked_grant_is_auth_expired(ledger):
    if ledger.revoke_grant is None:
        pytest.skip(f"{ledger.name} has no grant to revoke")
    ledger.add_customer("Harbor Bakery")
    ledger.revoke_grant()
    with pytest.raises(AuthExpired):
        pull(ledger, "customers")


def test_a_throttle_longer_than_a_job_may_sleep_is_rate_limited(ledger):
    if ledger.throttle is None:
        pytest.skip(f"{ledger.name} does not throttle")
    ledger.add_customer("Harbor Bakery")
    ledger.throttle()
    with pytest.raises(RateLimited) as e:
        pull(ledger, "customers")
    assert e.value.retry_after >= 60  # when to come back: the job is rescheduled, not slept
    assert sum(ledger.sleeps) <= 10
