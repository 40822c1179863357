"""Late fees in Xero: each charge one AUTHORISED ACCREC invoice of its own, PUT with the outbox
key as Idempotency-Key, posting to the owner's account; made once however often it is assessed,
delivered or retried; a waiver voids it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select, update

from arbridge.services.bootstrap import outbox_handlers
from arbridge.services.fees.assess import assess_late_fees
from arbridge.services.fees.owner import waive
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Connection, LateFeeAssessment, OutboxMessage
from arbridge.sync.outbox import LEASE, deliver
from tests.conftest import sync_now
from tests.contract.xero.conftest import TODAY
from tests.contract.xero.test_end_to_end import company, run

FEES = {"enabled": True, "flat_fee": "25.00", "grace_days": 7, "xero_account_code": "260"}


def connected(rt, settings, config, fake, fees=FEES):
    row = company(rt, "harbor-nz")
    contact = fake.add_contact("Harbor Cafe")
    # Due 15 October: 40 days overdue.
    original = fake.add_invoice(
        contact, "1000.00", issued=TODAY - timedelta(days=70), due=TODAY - timedelta(days=40)
    )
    done = run(
        settings, config,
        "connect", "xero", "--company", "harbor-nz", "--tenant-id", fake.tenant_id,
        "--refresh-token", fake.issue_grant()[1],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    with transaction(rt.sessions) as s:
        c = s.get(Company, row.id)
        c.settings = {**c.settings, "late_fees": fees}
        s.flush()
        s.expunge(c)
        conn = s.scalar(select(Connection).where(Connection.company_id == row.id))
        s.expunge(conn)
    sync_now(rt, conn, full=True)
    return c, conn, contact, fake.store["Invoices"][original]["InvoiceNumber"]


def fee_invoices(fake, number):
    return [
        i
        for i in fake.store["Invoices"].values()
        if i["LineItems"][0]["Description"] == f"Late fee on {number}"
    ]


def test_a_late_fee_becomes_one_xero_invoice(rt, settings, config, fake):
    c, conn, contact, number = connected(rt, settings, config, fake)
    assert len(assess_late_fees(rt, c).charged) == 1
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1
    [made] = fee_invoices(fake, number)
    assert (made["Type"], made["Status"], made["Contact"]["ContactID"]) == (
        "ACCREC",
        "AUTHORISED",
        contact,
    )
    assert made["Total"] == Decimal("25.00")
    assert made["LineItems"][0]["AccountCode"] == "260"
    [put] = [r for r in fake.requests if r["method"] == "PUT" and r["path"].endswith("Invoices")]
    assert put["headers"]["Idempotency-Key"].startswith("ledger_fee_invoice:")
    with rt.sessions() as s:
        assert s.scalar(select(LateFeeAssessment.ledger_ref)) == made["InvoiceID"]

    # A rerun, the synced-back fee invoice past its grace days later: still one.
    assess_late_fees(rt, c)
    rt.clock.advance(timedelta(days=10))
    sync_now(rt, conn)
    assert assess_late_fees(rt, c).charged == []
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert len(fee_invoices(fake, number)) == 1


def test_a_lost_answer_and_a_crash_make_no_second_xero_invoice(rt, settings, config, fake):
    c, _conn, _contact, number = connected(rt, settings, config, fake)
    assess_late_fees(rt, c)
    fake.injected.append(("lose_response",))  # Xero makes the invoice, the answer is lost
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    rt.clock.advance(timedelta(hours=1))
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with transaction(rt.sessions) as s:
        assert s.scalar(select(OutboxMessage.status)) == "sent"
        s.execute(update(OutboxMessage).values(status="sending", next_attempt_at=rt.clock.now()))
    rt.clock.advance(LEASE + timedelta(minutes=1))
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1
    assert len(fee_invoices(fake, number)) == 1


def test_without_an_account_chosen_the_write_fails_with_the_reason(rt, settings, config, fake):
    fees = {k: v for k, v in FEES.items() if k != "xero_account_code"}
    c, _conn, _contact, number = connected(rt, settings, config, fake, fees)
    assess_late_fees(rt, c)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with rt.sessions() as s:
        row = s.scalar(select(OutboxMessage))
    assert row.status == "failed"
    assert "no Xero account is chosen for late fees" in row.last_error
    assert fee_invoices(fake, number) == []


def test_waiving_voids_the_xero_invoice(rt, settings, config, fake):
    c, _conn, _contact, number = connected(rt, settings, config, fake)
    assess_late_fees(rt, c)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with transaction(rt.sessions) as s:
        row = s.scalar(select(LateFeeAssessment))
        waive(s, rt.clock, s.get(Company, c.id), row.id, None)
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1
    [made] = fee_invoices(fake, number)
    assert made["Status"] == "VOIDED"
