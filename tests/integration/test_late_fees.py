"""The late-fee run on the demo ledger: each charge claimed once and written once as an invoice
of its own; reruns, a second worker and outbox retries charge nothing more; a waiver voids it.

Today on the test clock is 24 November 2026 (America/Chicago)."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from arbridge.collections.late_fees import assess_all, late_fee_policy
from arbridge.readmodels.fees import pay_page_charges
from arbridge.services.bootstrap import outbox_handlers
from arbridge.services.fees.assess import assess_late_fees, claim, load_facts
from arbridge.services.fees.owner import set_exempt, waive
from arbridge.services.reminders.rendering import render_reminder
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Company,
    Customer,
    Invoice,
    InvoiceHold,
    LateFeeAssessment,
    OutboxMessage,
)
from arbridge.sync.outbox import deliver
from arbridge.sync.store import company_today, ledger_connection
from arbridge.worker import run_collections
from tests.builders import SmallCompany
from tests.conftest import ON_POSTGRES
from tests.race_condition import run_before

POLICY = {
    "late_fees": {
        "enabled": True,
        "grace_days": 5,
        "flat_fee": "25.00",
        "annual_rate": "12",
    }
}


def books_for(rt, settings=POLICY, slug="harbor"):
    return (
        SmallCompany(slug=slug, settings=settings)
        .customer("C1", "Harbor Bakery")
        .customer("C2", "Cedar Studio")
        # Due 15 October: 40 days overdue.
        .invoice("I1", "C1", "1000.00", days_overdue=40, number="INV-1042")
        # 3 days overdue: within the grace period.
        .invoice("I2", "C1", "500.00", days_overdue=3, number="INV-1043")
        .invoice("I3", "C2", "800.00", days_overdue=40, number="INV-1044")
        .build(rt)
    )


def fee_invoices(books) -> list[dict]:
    return [
        i
        for i in books.ledger.read()["Invoice"]
        if str(i.get("invoiceNumber", "")).startswith("LF-")
    ]


def charges(rt, company_id) -> list[LateFeeAssessment]:
    with rt.sessions() as s:
        return list(
            s.scalars(
                select(LateFeeAssessment)
                .where(LateFeeAssessment.company_id == company_id)
                .order_by(LateFeeAssessment.id)
            )
        )


def test_a_run_charges_past_grace_once_and_the_ledger_gets_one_invoice_each(rt):
    books = books_for(rt)
    run = assess_late_fees(rt, books.company)
    # INV-1042 and INV-1044 (due 15 Oct): the fee, 25.00, and October's interest, 16 days:
    # 1,000 x 12% / 365 x 16 = 5.2603 -> 5.26 and 800 x 12% / 365 x 16 = 4.2082 -> 4.21.
    got = sorted((a.description, a.amount.amount) for a in run.charged)
    assert got == [
        ("Interest on INV-1042 for October 2026", Decimal("5.26")),
        ("Interest on INV-1044 for October 2026", Decimal("4.21")),
        ("Late fee on INV-1042", Decimal("25.00")),
        ("Late fee on INV-1044", Decimal("25.00")),
    ]
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 4
    made = fee_invoices(books)
    assert sorted((i["lineItems"][0]["description"], i["total"]) for i in made) == sorted(
        (d, str(a)) for d, a in got
    )
    assert {i["contactId"] for i in made} == {"C1", "C2"}
    rows = charges(rt, books.company.id)
    assert {r.status for r in rows} == {"posted"}
    assert {r.ledger_ref for r in rows} == {i["id"] for i in made}

    # The same day again, and the next: nothing more, and the ledger keeps its four.
    assert assess_late_fees(rt, books.company).charged == []
    rt.clock.advance(timedelta(days=1))
    assert assess_late_fees(rt, books.company).charged == []
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert len(fee_invoices(books)) == 4


def test_fee_invoices_synced_back_are_never_charged_in_turn(rt):
    books = books_for(rt)
    assess_late_fees(rt, books.company)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    books.sync()
    # 1 December: the fee invoices (due 24 November) are 7 days overdue, past the grace
    # period, and charged nothing. New: November's interest on the originals (1,000 x 12% /
    # 365 x 30 = 9.86; 800: 7.89), and INV-1043 (due 21 November) is now past its grace: its
    # fee, and 22-30 November's interest, 500 x 12% / 365 x 9 = 1.4795 -> 1.48.
    rt.clock.advance(timedelta(days=7))
    run = assess_late_fees(rt, books.company)
    assert sorted((a.description, a.amount.amount) for a in run.charged) == [
        ("Interest on INV-1042 for November 2026", Decimal("9.86")),
        ("Interest on INV-1043 for November 2026", Decimal("1.48")),
        ("Interest on INV-1044 for November 2026", Decimal("7.89")),
        ("Late fee on INV-1043", Decimal("25.00")),
    ]


def test_the_worker_s_daily_collections_run_assesses_fees(rt):
    books = books_for(rt)
    with rt.sessions() as s:
        company = s.get(Company, books.company.id)
        s.expunge(company)
    run_collections(rt, company)
    run_collections(rt, company)
    assert len(charges(rt, books.company.id)) == 4


def test_a_second_worker_with_the_same_decisions_claims_nothing(rt):
    """Two workers that read the same facts before either wrote: the second finds every key
    taken and queues no second ledger invoice (on both databases)."""
    books = books_for(rt)
    company = books.company
    policy = late_fee_policy(company.settings)
    as_of = company_today(company, rt.clock)
    with rt.sessions() as s:
        facts, customers, exempt = load_facts(s, company, policy, as_of)
    decided = assess_all(facts, policy, as_of, exempt)
    numbers = {f.invoice_id: f.number for f in facts}
    claimed = []
    for _worker in range(2):
        with transaction(rt.sessions) as s:
            conn = ledger_connection(s, company.id)
            claimed.append(claim(s, rt, company, conn, decided, customers, numbers, as_of))
    assert [len(c) for c in claimed] == [4, 0]
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 4


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent writers need PostgreSQL's row locks")
def test_two_workers_racing_charge_once(rt):
    """A second worker runs the whole job while the first is between its read and its write."""
    books = books_for(rt)
    second = []

    def other_worker(*_args, **_kwargs):
        t = threading.Thread(target=lambda: second.append(assess_late_fees(rt, books.company)))
        t.start()
        t.join()

    with run_before("arbridge.services.fees.assess.claim", other_worker):
        first = assess_late_fees(rt, books.company)
    assert len(first.charged) + len(second[0].charged) == 4
    assert len(charges(rt, books.company.id)) == 4
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert len(fee_invoices(books)) == 4


def test_an_outbox_retry_after_a_crash_makes_no_second_ledger_invoice(rt):
    books = books_for(rt)
    assess_late_fees(rt, books.company)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    # As if the worker died after the ledger answered and before the row was marked sent.
    with transaction(rt.sessions) as s:
        for row in s.scalars(select(OutboxMessage)):
            row.status = "sending"
    rt.clock.advance(timedelta(hours=1))
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 4
    assert len(fee_invoices(books)) == 4


def test_an_exempt_customer_is_not_charged(rt):
    books = books_for(rt)
    with transaction(rt.sessions) as s:
        set_exempt(s, rt.clock, s.get(Company, books.company.id), books.customer("C2").id, True)
    run = assess_late_fees(rt, books.company)
    assert {a.description for a in run.charged} == {
        "Late fee on INV-1042",
        "Interest on INV-1042 for October 2026",
    }


def test_waiving_a_charge_voids_its_ledger_invoice_once_and_it_is_not_charged_again(rt):
    books = books_for(rt)
    assess_late_fees(rt, books.company)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    fee = next(r for r in charges(rt, books.company.id) if r.description == "Late fee on INV-1042")
    for _twice in range(2):
        with transaction(rt.sessions) as s:
            waive(s, rt.clock, s.get(Company, books.company.id), fee.id, None)
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1
    voided = next(i for i in books.ledger.read()["Invoice"] if i["id"] == fee.ledger_ref)
    assert voided["status"] == "VOIDED"
    rt.clock.advance(timedelta(days=1))
    assert assess_late_fees(rt, books.company).charged == []
    assert len([i for i in fee_invoices(books) if i["status"] != "VOIDED"]) == 3


def test_a_charge_waived_before_its_invoice_is_made_is_never_made(rt):
    books = books_for(rt)
    assess_late_fees(rt, books.company)
    fee = charges(rt, books.company.id)[0]
    with transaction(rt.sessions) as s:
        waive(s, rt.clock, s.get(Company, books.company.id), fee.id, None)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert len(fee_invoices(books)) == 3
    with rt.sessions() as s:
        assert s.get(LateFeeAssessment, fee.id).status == "waived"


def test_the_cap_holds_across_runs(rt):
    settings = {"late_fees": {**POLICY["late_fees"], "cap": "30.00"}}
    books = books_for(rt, settings)
    assess_late_fees(rt, books.company)
    rt.clock.advance(timedelta(days=70))
    assess_late_fees(rt, books.company)
    with rt.sessions() as s:
        per_invoice = dict(
            s.execute(
                select(LateFeeAssessment.invoice_id, func.sum(LateFeeAssessment.amount_minor))
                .where(LateFeeAssessment.status != "waived")
                .group_by(LateFeeAssessment.invoice_id)
            ).all()
        )
    assert set(per_invoice.values()) == {3000}


def test_no_policy_no_charges(rt):
    books = books_for(rt, settings={})
    assert assess_late_fees(rt, books.company).charged == []
    assert charges(rt, books.company.id) == []


def test_reminders_state_the_charges_and_the_fee_policy(rt):
    books = books_for(rt)
    assess_late_fees(rt, books.company)
    today = company_today(books.company, rt.clock)
    with rt.sessions() as s:
        inv = s.get(Invoice, books.invoice("I1").id)
        customer = s.get(Customer, inv.customer_id)
        out = render_reminder(rt, books.company, customer, None, [(inv, "tok")], "overdue", today)
    # 25.00 + 5.26 on INV-1042.
    assert "Late fees and interest charged on these invoices: $30.26." in out.text
    assert (
        "Payment terms: A late fee of $25.00 is charged once more than 5 days after the due "
        "date. Overdue balances carry simple interest of 12% a year, charged monthly." in out.text
    )


def test_a_disputed_invoice_is_not_charged_while_the_dispute_is_open(rt):
    books = books_for(rt)
    inv = books.invoice("I1")
    with transaction(rt.sessions) as s:
        hold = InvoiceHold(
            company_id=books.company.id,
            invoice_id=inv.id,
            kind="dispute",
            message="The delivery was short",
            created_by="customer",
            created_at=rt.clock.now(),
        )
        s.add(hold)
    run = assess_late_fees(rt, books.company)
    assert {a.invoice_id for a in run.charged} == {books.invoice("I3").id}
    with transaction(rt.sessions) as s:
        s.get(InvoiceHold, hold.id).resolved_at = rt.clock.now()
    run = assess_late_fees(rt, books.company)
    assert {a.invoice_id for a in run.charged} == {inv.id}


def test_the_pay_page_read_finds_each_standing_charge_and_its_synced_invoice(rt):
    books = books_for(rt)
    assess_late_fees(rt, books.company)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    books.sync()
    i1 = books.invoice("I1").id
    with rt.sessions() as s:
        found = pay_page_charges(s, books.company.id, [i1])
    got = [(c.description, c.amount.amount, c.fee_invoice.balance.amount) for c in found[i1]]
    assert got == [
        ("Late fee on INV-1042", Decimal("25.00"), Decimal("25.00")),
        ("Interest on INV-1042 for October 2026", Decimal("5.26"), Decimal("5.26")),
    ]


def test_the_pay_page_shows_the_charges_and_one_checkout_takes_them_with_the_invoice(rt, client):
    from arbridge.services.payments.checkout import handle_checkout_return, start_checkout
    from arbridge.services.payments.quote import quote
    from arbridge.services.payments.simulated import simulated_stripe
    from arbridge.sync.store import find_pay_token, issue_pay_token
    from arbridge.worker import drain

    books = books_for(rt)
    assess_late_fees(rt, books.company)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    books.sync()
    i1 = books.invoice("I1")
    with transaction(rt.sessions) as s:
        token = issue_pay_token(s, rt.clock, s.get(Invoice, i1.id))
    with rt.sessions() as s:
        q = quote(rt, s, find_pay_token(s, token))
        # 1000.00 + the 25.00 fee + 5.26 interest for October, each its own ledger invoice.
        assert q.amount.amount == Decimal("1030.26")
        assert len(q.invoices) == 3
    page = client.get(f"/pay/{token}").get_data(as_text=True)
    assert "Late fee on INV-1042" in page and "Interest on INV-1042 for October 2026" in page
    assert "1,030.26" in page
    url = start_checkout(rt, token)
    back = simulated_stripe(rt).complete(url.rsplit("/", 1)[1], "card", "succeed")
    assert handle_checkout_return(rt, token, back.split("session_id=")[1]) == "paid"
    drain(rt)
    books.sync()
    with rt.sessions() as s:
        assert all(not s.get(Invoice, i.id).is_open for i in q.invoices)
    paid = [
        p for p in books.ledger.read()["Payment"] if str(p.get("reference", "")).startswith("pi_")
    ]
    assert len(paid) == 1 and Decimal(paid[0]["amount"]) == Decimal("1030.26")
