"""Late fees in QuickBooks: each charge one Invoice of its own naming the owner's Item, made
once however often it is assessed, delivered or retried; a waiver voids it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select, update

from arbridge.services.bootstrap import outbox_handlers
from arbridge.services.fees.assess import assess_late_fees
from arbridge.services.fees.owner import waive
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, LateFeeAssessment, OutboxMessage
from arbridge.sync.outbox import LEASE, deliver
from tests.contract.quickbooks.conftest import TODAY, sync

FEES = {"enabled": True, "flat_fee": "25.00", "quickbooks_item_id": "21"}


def set_up(rt, fake, connected):
    customer = fake.add_customer("Harbor Bakery")
    # Due 15 October: 40 days overdue.
    invoice = fake.add_invoice(
        customer,
        "1000.00",
        issued=TODAY - timedelta(days=70),
        due=TODAY - timedelta(days=40),
        number="1042",
    )
    with transaction(rt.sessions) as s:
        company = s.get(Company, connected.company.id)
        company.settings = {**company.settings, "late_fees": FEES}
        s.flush()
        s.expunge(company)
    sync(rt, connected.conn)
    return company, customer, invoice


def test_a_late_fee_becomes_one_quickbooks_invoice_with_the_chosen_item(rt, fake, connected):
    company, customer, _ = set_up(rt, fake, connected)
    assert len(assess_late_fees(rt, company).charged) == 1
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1
    [made] = fake.invoices_named("Late fee on 1042")
    assert made["CustomerRef"]["value"] == customer
    assert made["TotalAmt"] == Decimal("25.00")
    [line] = made["Line"]
    assert line["SalesItemLineDetail"]["ItemRef"] == {"value": "21"}
    assert (line["SalesItemLineDetail"]["Qty"], line["Amount"]) == (1, Decimal("25.00"))
    with rt.sessions() as s:
        row = s.scalar(select(LateFeeAssessment))
        assert (row.status, row.ledger_ref) == ("posted", made["Id"])

    # Reruns, a later day, a synced-back fee invoice: still one.
    assess_late_fees(rt, company)
    rt.clock.advance(timedelta(days=10))
    sync(rt, connected.conn)
    assert assess_late_fees(rt, company).charged == []
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert len(fake.invoices_named("Late fee")) == 1


def test_a_crash_after_quickbooks_made_the_invoice_makes_no_second(rt, fake, connected):
    company, _, _ = set_up(rt, fake, connected)
    assess_late_fees(rt, company)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with transaction(rt.sessions) as s:
        s.execute(update(OutboxMessage).values(status="sending", next_attempt_at=rt.clock.now()))
    rt.clock.advance(LEASE + timedelta(minutes=1))
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1  # retried: same requestid
    assert len(fake.invoices_named("Late fee on 1042")) == 1


def test_an_answer_lost_on_the_wire_is_retried_into_the_same_invoice(rt, fake, connected):
    company, _, _ = set_up(rt, fake, connected)
    assess_late_fees(rt, company)
    fake.drop_after_write()
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    rt.clock.advance(timedelta(hours=1))
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with rt.sessions() as s:
        assert s.scalar(select(OutboxMessage.status)) == "sent"
    assert len(fake.invoices_named("Late fee on 1042")) == 1


def test_waiving_voids_the_quickbooks_invoice(rt, fake, connected):
    company, _, _ = set_up(rt, fake, connected)
    assess_late_fees(rt, company)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with transaction(rt.sessions) as s:
        row = s.scalar(select(LateFeeAssessment))
        waive(s, rt.clock, s.get(Company, company.id), row.id, None)
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1
    [made] = fake.invoices_named("Late fee on 1042")
    assert (made["PrivateNote"], made["TotalAmt"]) == ("Voided", Decimal("0"))
    with rt.sessions() as s:
        assert (
            s.scalar(select(OutboxMessage.status).where(OutboxMessage.kind == "ledger_fee_void"))
            == "sent"
        )
