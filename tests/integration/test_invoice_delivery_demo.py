"""Invoice delivery on the demo ledger: its unsent invoices, sent once each through DemoBooks'
own send; the automatic send of new invoices; and the demo's late fee, charged once into the
demo ledger and shown on the pay page.

Today on the test clock is 24 November 2026 (America/Chicago)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select

from arbridge.demo import DEMO_TENANT
from arbridge.readmodels.delivery import unsent_invoices
from arbridge.services.bootstrap import outbox_handlers
from arbridge.services.delivery.send import queue_sends, send_new_invoices
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Invoice, LateFeeAssessment, OutboxMessage
from arbridge.sync.outbox import deliver
from arbridge.sync.store import issue_pay_token, ledger_connection
from arbridge.worker import run_collections, run_sync
from tests.conftest import sync_now

TODAY = date(2026, 11, 24)


def ledger_sent(rt):
    return rt.demo_ledger(DEMO_TENANT).read().get("Sent", [])


def company_row(rt, company_id):
    with rt.sessions() as s:
        row = s.get(Company, company_id)
        s.expunge(row)
    return row


def test_the_demo_has_a_realistic_share_of_unsent_invoices(rt, demo_company):
    with rt.sessions() as s:
        found = unsent_invoices(s, demo_company.id, limit=100)
        open_count = s.scalar(select(func.count()).where(Invoice.is_open))
    # Most invoices went out; some fresh ones wait, now and then an old one was forgotten.
    assert 5 <= found.count <= open_count // 5
    assert all(r.invoice.is_open and r.invoice.ledger_sent is False for r in found.rows)
    assert min(r.invoice.issued_on for r in found.rows) < TODAY - timedelta(days=30)
    assert sum(r.invoice.issued_on >= TODAY - timedelta(days=14) for r in found.rows) >= 3


def test_every_unsent_invoice_is_sent_once_through_the_demo_ledger(rt, demo_company):
    with rt.sessions() as s:
        ids = [r.invoice.id for r in unsent_invoices(s, demo_company.id, limit=100).rows]
    for _ in range(2):  # asked twice (two clicks, two people): queued once
        with transaction(rt.sessions) as s:
            queue_sends(s, rt.clock, s.get(Company, demo_company.id), ids)
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == len(ids)
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 0
    sent = ledger_sent(rt)
    assert len(sent) == len(ids) == len({s["invoiceId"] for s in sent})
    with rt.sessions() as s:
        assert unsent_invoices(s, demo_company.id).count == 0
        conn = ledger_connection(s, demo_company.id)
    sync_now(rt, conn)  # the ledger says so too
    with rt.sessions() as s:
        assert set(s.scalars(select(Invoice.ledger_sent).where(Invoice.id.in_(ids)))) == {True}


def test_automatic_sending_sends_each_new_invoice_once_and_no_backlog(rt, demo_company):
    with rt.sessions() as s:
        backlog = unsent_invoices(s, demo_company.id).count
    with transaction(rt.sessions) as s:
        c = s.get(Company, demo_company.id)
        c.settings = {
            **c.settings,
            "delivery": {"auto_send": True, "auto_send_since": TODAY.isoformat()},
        }
    company = company_row(rt, demo_company.id)
    ledger = rt.demo_ledger(DEMO_TENANT)
    new = ledger.add_invoice(
        invoiceNumber="INV-2001",
        contactId="C100",
        date=TODAY.isoformat(),
        dueDate=(TODAY + timedelta(days=30)).isoformat(),
        currencyCode="USD",
        currencyRate="1",
        terms="Net 30",
        total="480.00",
        sentToContact=False,
        lineItems=[],
    )
    for _ in range(3):  # syncs (and a second worker) queue it once
        run_sync(rt, company)
        deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert [s["invoiceId"] for s in ledger_sent(rt)] == [new]
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).where(OutboxMessage.kind == "invoice_send")) == 1
        # The invoices there before the owner turned it on wait for the owner's own Send.
        assert unsent_invoices(s, demo_company.id).count == backlog
    # Turned off: the next new invoice is left for the owner.
    with transaction(rt.sessions) as s:
        c = s.get(Company, demo_company.id)
        c.settings = {**c.settings, "delivery": {"auto_send": False}}
    assert send_new_invoices(rt, company_row(rt, demo_company.id)) == 0


def test_the_demo_charges_a_late_fee_once_into_its_ledger_and_the_pay_page_shows_it(
    rt, demo_company, client
):
    company = company_row(rt, demo_company.id)
    for _ in range(2):  # the daily run, twice (a rerun, a second worker)
        run_collections(rt, company)
        deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with rt.sessions() as s:
        charge = s.scalars(select(LateFeeAssessment).order_by(LateFeeAssessment.id)).first()
        assert charge is not None and charge.status == "posted"
        inv = s.get(Invoice, charge.invoice_id)
        number, late_by = inv.number, (TODAY - inv.due_on).days
    assert late_by > 30  # past the demo's grace period

    def fee_invoices():
        return [
            i
            for i in rt.demo_ledger(DEMO_TENANT).read()["Invoice"]
            if any(li.get("description") == f"Late fee on {number}" for li in i["lineItems"])
        ]

    [fee] = fee_invoices()
    assert (fee["total"], fee["id"]) == ("25.00", charge.ledger_ref)
    # The next day's run, after a sync that brings the fee invoice in: still one.
    rt.clock.advance(timedelta(days=1))
    with rt.sessions() as s:
        conn = ledger_connection(s, company.id)
    sync_now(rt, conn)
    run_collections(rt, company)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert len(fee_invoices()) == 1

    with transaction(rt.sessions) as s:
        token = issue_pay_token(s, rt.clock, s.get(Invoice, charge.invoice_id))
    page = client.get(f"/pay/{token}").get_data(as_text=True)
    assert f"Late fee on {number}" in page and "$25.00" in page


def test_the_demo_s_first_run_charges_a_handful_once_not_every_old_invoice(rt, demo_company):
    """Fees on from the start charge from six days ago (18 Nov): only invoices that passed their
    30-day grace period since then, due 18-24 October, not the 88 older ones the old rule
    back-charged."""
    company = company_row(rt, demo_company.id)
    assert company.settings["late_fees"]["charge_from"] == "2026-11-18"
    for _ in range(2):  # the daily run, twice (a rerun, a second worker)
        run_collections(rt, company)
        deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with rt.sessions() as s:
        charged = s.execute(
            select(Invoice.number, Invoice.due_on)
            .join(LateFeeAssessment, LateFeeAssessment.invoice_id == Invoice.id)
            .order_by(Invoice.due_on)
        ).all()
    # On the demo ledger: five, each due 18-24 October (passed its grace on 18-24 November).
    assert len(charged) == 5
    assert all(date(2026, 10, 18) <= due <= date(2026, 10, 24) for _n, due in charged)
    fee_lines = [
        li["description"]
        for i in rt.demo_ledger(DEMO_TENANT).read()["Invoice"]
        for li in i["lineItems"]
        if str(li.get("description", "")).startswith("Late fee on ")
    ]
    assert sorted(fee_lines) == sorted(f"Late fee on {n}" for n, _d in charged)
    # The next day: nothing more (no open invoice of $100 or more on it is due 25 October).
    rt.clock.advance(timedelta(days=1))
    run_collections(rt, company)
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(LateFeeAssessment)) == len(charged)


def test_the_demos_monthly_statement_email_carries_its_pdf(settings, clock, demo_company, tmp_path):
    """The demo sends statements on the 1st (its reminders settings say so); through a real
    SMTP server, each statement email carries the customer's statement as PDF, with the link
    the email's text gives."""
    import io
    import re

    from pypdf import PdfReader

    from arbridge.runtime import Runtime
    from arbridge.worker import tick
    from tests.contract.email.server import smtp_server
    from tests.integration.remind_support import chicago

    with smtp_server(tmp_path) as smtp:
        mail_rt = Runtime.open(settings.with_(smtp_url=smtp.url), clock)
        try:
            clock.at = chicago(date(2026, 12, 1), 9)
            with mail_rt.sessions() as s:
                conn = ledger_connection(s, demo_company.id)
            sync_now(mail_rt, conn)  # reminders and statements wait for a fresh ledger
            for hour in (9, 10, 11):
                clock.at = chicago(date(2026, 12, 1), hour)
                tick(mail_rt, "w")
        finally:
            mail_rt.close()
        statements = [
            r.message
            for r in smtp.inbox.messages
            if r.message["Subject"].startswith("Your statement")
        ]
    assert len(statements) >= 10  # one per customer with open invoices and an address
    msg = statements[0]
    [(filename, kind, data)] = [
        (p.get_filename(), p.get_content_type(), p.get_content()) for p in msg.iter_attachments()
    ]
    assert kind == "application/pdf" and filename.endswith("-2026-12-01.pdf")
    [link] = re.findall(r"Pay them all together: (\S+)", msg.get_body(("plain",)).get_content())
    words = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages).split())
    assert link in words and "Statement of account Dec 1, 2026" in words


def test_an_invoice_nobody_has_an_address_for_fails_with_the_reason_shown(rt, demo_company):
    from arbridge.sync.model import Contact, Customer

    with rt.sessions() as s:
        first = unsent_invoices(s, demo_company.id).rows[0].invoice
        source_id = s.get(Customer, first.customer_id).source_id
    ledger = rt.demo_ledger(DEMO_TENANT)
    with ledger.change() as state:  # no address in DemoBooks...
        ledger.find(state, "Customer", source_id)["contactPerson"].pop("email")
    with transaction(rt.sessions) as s:  # ... nor in arbridge
        for contact in s.scalars(select(Contact).where(Contact.customer_id == first.customer_id)):
            contact.email = None
    with transaction(rt.sessions) as s:
        queue_sends(s, rt.clock, s.get(Company, demo_company.id), [first.id])
    for _ in range(2):
        deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert ledger_sent(rt) == []
    with rt.sessions() as s:
        [row] = [r for r in unsent_invoices(s, demo_company.id).rows if r.invoice.id == first.id]
        assert row.sending == "failed"
        assert row.problem.startswith("the ledger could not send invoice")
        assert "no email address" in row.problem and "add one in the ledger" in row.problem
        assert s.scalar(select(func.count()).where(OutboxMessage.kind == "email")) == 0

    # The owner adds an address and presses Try again: it goes, once.
    with transaction(rt.sessions) as s:
        contact = s.scalar(select(Contact).where(Contact.customer_id == first.customer_id))
        contact.email = "accounts@new-address.example"
    for retry_failed in (False, True):  # a plain queue leaves a failed send alone
        with transaction(rt.sessions) as s:
            company = s.get(Company, demo_company.id)
            done = queue_sends(s, rt.clock, company, [first.id], retry_failed=retry_failed)
        assert done.queued == int(retry_failed)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert [(m["invoiceId"], m["to"]) for m in ledger_sent(rt)] == [
        (first.source_id, "accounts@new-address.example")
    ]
