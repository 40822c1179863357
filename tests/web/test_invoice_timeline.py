"""The invoice page's timeline (issue 13: "the timeline of everything that happened to it"): the
page had none. Issued and due, the reminders sent with a link to the message, the customer's
promise, payments in the ledger and through arbridge, pauses; newest first, in the business's
timezone, in a fixed number of statements."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from arbridge.services.reminders.holds import record_hold
from arbridge.services.reminders.run import run_reminders
from arbridge.sync.db import transaction
from arbridge.sync.model import Invoice, MailMessage, PaymentAllocation, ReminderSend
from arbridge.sync.store import company_today
from arbridge.worker import drain
from tests.web.conftest import csrf_token, fresh_company, parse
from tests.web.test_query_counts import counted


def _reminded_invoice(rt, company) -> tuple[int, int]:
    """An invoice whose reminder email went out today: (its id, the message's id)."""
    run_reminders(rt, fresh_company(rt, company.slug))
    drain(rt)
    with rt.sessions() as s:
        inv_id, key = s.execute(
            select(ReminderSend.invoice_id, ReminderSend.outbox_key)
            .where(ReminderSend.channel == "email", ReminderSend.status == "sent")
            .order_by(ReminderSend.id)
            .limit(1)
        ).one()
        mail_id = s.scalar(select(MailMessage.id).where(MailMessage.outbox_key == key))
        return inv_id, mail_id


def test_the_invoice_page_had_no_timeline_of_what_happened_to_it(owner_client, rt, demo_company):
    inv_id, mail_id = _reminded_invoice(rt, demo_company)
    today = company_today(demo_company, rt.clock)
    with transaction(rt.sessions) as s:
        record_hold(s, rt, s.get(Invoice, inv_id), "promise", promised_on=today + timedelta(days=4))
    url = f"/c/demo/invoices/{inv_id}"
    token = csrf_token(owner_client.get(url).data)
    owner_client.post(f"/c/demo/invoices/{inv_id}/pause", data={"csrf_token": token, "next": url})
    doc = parse(owner_client.get(url).data)
    timeline = doc.by_id("timeline")
    items = [li.text for li in timeline.find_all("li")]
    text = " ".join(items)
    assert "Issued" in items[-1]  # oldest last
    assert "reminder (" in text and "after due) sent to" in text
    assert "after-" not in text and "overdue_" not in text  # no internal names
    assert f"/c/demo/mailbox/{mail_id}" in {a.attrs["href"] for a in timeline.find_all("a")}
    assert "promised to pay by" in text.lower()
    assert "Reminders paused" in items[0]
    assert "CST" in text  # times in the business's timezone, the zone named


def test_ledger_payments_show_on_the_timeline(owner_client, rt, demo_company):
    with rt.sessions() as s:
        inv_id = s.scalar(select(PaymentAllocation.invoice_id).limit(1))
    text = parse(owner_client.get(f"/c/demo/invoices/{inv_id}").data).by_id("timeline").text
    assert "Payment recorded in your ledger" in text or "Credit note" in text


def test_the_timeline_costs_the_same_statements_whatever_happened(owner_client, rt, demo_company):
    busy, _ = _reminded_invoice(rt, demo_company)
    with rt.sessions() as s:
        quiet = s.scalar(
            select(Invoice.id).where(
                Invoice.company_id == demo_company.id,
                Invoice.id.not_in(select(ReminderSend.invoice_id)),
                Invoice.id.not_in(select(PaymentAllocation.invoice_id)),
            )
        )
    costs = []
    for inv_id in (quiet, busy):
        with counted(rt) as statements:
            assert owner_client.get(f"/c/demo/invoices/{inv_id}").status_code == 200
        costs.append(len(statements))
    assert costs[0] == costs[1], costs


def test_an_evening_change_on_the_day_of_issue_showed_as_a_later_change(
    owner_client, rt, demo_company
):
    # Changed at 21:00 in Chicago on the day it was issued: 03:00 the next day in UTC. The page
    # compared UTC's day with the day of issue, and listed a change that was the issuing itself.
    with transaction(rt.sessions) as s:
        inv = s.scalars(select(Invoice).where(Invoice.company_id == demo_company.id).limit(1)).one()
        inv_id, issued = inv.id, inv.issued_on
        inv.source_updated_at = datetime.combine(issued, time(21), ZoneInfo("America/Chicago"))
    items = [
        li.text
        for li in parse(owner_client.get(f"/c/demo/invoices/{inv_id}").data)
        .by_id("timeline")
        .find_all("li")
    ]
    assert not any("Last changed" in item for item in items), items
    # The next morning, in Chicago, it is a change.
    with transaction(rt.sessions) as s:
        s.get(Invoice, inv_id).source_updated_at = datetime.combine(
            issued + timedelta(days=1), time(8), ZoneInfo("America/Chicago")
        )
    items = [
        li.text
        for li in parse(owner_client.get(f"/c/demo/invoices/{inv_id}").data)
        .by_id("timeline")
        .find_all("li")
    ]
    assert any("Last changed" in item for item in items), items
