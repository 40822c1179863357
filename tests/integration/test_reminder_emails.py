"""Emails as they arrive at a real SMTP server (aiosmtpd): the reminder's HTML version has a Pay
button leading to the customer's own payment page, the plain-text alternative stays, the owner's
digest reads on a phone, and the owner's test email carries only inert sample links."""

from __future__ import annotations

import html as htmllib
import re
from datetime import timedelta

from sqlalchemy import select

from arbridge.services.messaging.queue import queue_test_message
from arbridge.services.reminders.rendering import render_reminder
from arbridge.services.reminders.run import run_reminders
from arbridge.sync.model import Contact, Customer, Invoice, PayToken
from arbridge.sync.store import company_today, find_pay_token
from arbridge.worker import drain, tick
from tests.integration import test_remind_run
from tests.integration.remind_support import START, Cust, Inv, build_world, chicago

# The real SMTP server (aiosmtpd) and a runtime that sends through it, as the run's tests have.
smtp, mail_rt = test_remind_run.smtp, test_remind_run.mail_rt
HARBOR = Cust("HAR", "Harbor Bakery", "Alice", "alice@harbor.example")
OWNER = "owner@acme-supply.example"
BUTTON = re.compile(r'<a class="pay-button" href="([^"]+)"[^>]*>([^<]+)</a>')
# Names a person must never read: step keys, wording keys, escalation keys.
INTERNAL = re.compile(r"\b(before|after)-\d+\b|overdue_firm|final_notice|notify_owner|call_guide")


def only(smtp, to: str):
    [msg] = [r.message for r in smtp.inbox.messages if str(r.message["To"]) == to]
    return msg


def parts(msg) -> tuple[str, str]:
    assert msg.get_content_type() == "multipart/alternative" or msg.is_multipart()
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = msg.get_body(("html",)).get_content()
    return text, html


def token_of(url: str, base: str) -> str:
    assert url.startswith(f"{base}/pay/"), url
    return url.removeprefix(f"{base}/pay/")


def test_a_reminder_about_one_invoice_has_a_pay_button_to_its_payment_page(mail_rt, smtp):
    world = build_world(mail_rt, [HARBOR], [Inv("A", "HAR", -3, "120.00")])
    assert run_reminders(mail_rt, world.company).emails == 1
    drain(mail_rt)

    text, html = parts(only(smtp, HARBOR.email))
    [(href, label)] = BUTTON.findall(html)
    href = htmllib.unescape(href)
    assert label == "Pay $120.00 now"
    with mail_rt.sessions() as s:
        row = find_pay_token(s, token_of(href, mail_rt.settings.base_url))
        assert s.get(Invoice, row.invoice_id).source_id == "A"
    # The table-based ("bulletproof") button, and one column at most 600 px wide for a phone.
    assert 'bgcolor="#1d4ed8"' in html and "max-width:600px" in html
    assert 'name="viewport"' in html
    # The plain-text alternative is kept, with the same link in words.
    assert f"Pay online: {href}\n" in text
    assert "Hello Alice," in text and "<" not in text.split("To stop")[0]
    assert not INTERNAL.search(text) and not INTERNAL.search(html)


def test_a_reminder_about_several_invoices_pays_them_together(mail_rt, smtp):
    world = build_world(
        mail_rt, [HARBOR], [Inv("A", "HAR", -3, "100.00"), Inv("B", "HAR", -10, "50.00")]
    )
    run_reminders(mail_rt, world.company)
    drain(mail_rt)

    text, html = parts(only(smtp, HARBOR.email))
    [(href, label)] = BUTTON.findall(html)
    assert label == "Pay $150.00"
    with mail_rt.sessions() as s:
        row = find_pay_token(s, token_of(htmllib.unescape(href), mail_rt.settings.base_url))
        assert row.invoice_id is None and row.customer_id == world.customer("HAR").id
    assert "INV-A" in text and "INV-B" in text  # each with its own link in the text
    assert text.count("Pay online: ") == 2


def test_the_owners_digest_reads_on_a_phone_and_names_no_internal_step(mail_rt, smtp, clock):
    world = build_world(mail_rt, [HARBOR], [Inv("A", "HAR", -8, "100.00")])
    world.set_reminders(
        sequences={
            "default": [
                {"offset_days": 3, "template": "overdue"},
                {"offset_days": 10, "template": "overdue_firm", "escalation": "notify_owner"},
            ]
        }
    )
    tick(mail_rt, "w")
    clock.at = chicago(START + timedelta(days=2))
    tick(mail_rt, "w")

    msg = only(smtp, OWNER)
    assert str(msg["Subject"]) == "1 account needs your attention"
    text, html = parts(msg)
    assert "Harbor Bakery has not paid INV-A ($100.00)" in text
    assert "its step 10 days after due (firm email)" in text
    assert not INTERNAL.search(text) and not INTERNAL.search(html)
    calls = f"{mail_rt.settings.base_url}/c/{world.company.slug}/calls"
    assert f"Your call list: {calls}\n" in text
    assert "max-width:600px" in html and 'name="viewport"' in html
    assert BUTTON.findall(html) == [(calls, "Open the call list")]
    assert "Harbor Bakery has not paid INV-A ($100.00)" in html


def test_the_owners_test_email_carries_only_inert_sample_links(mail_rt, smtp):
    world = build_world(mail_rt, [HARBOR], [Inv("A", "HAR", -3, "120.00")])
    rt, company = mail_rt, world.company
    with rt.sessions() as s:
        inv = s.scalar(select(Invoice).where(Invoice.company_id == company.id))
        customer = s.get(Customer, inv.customer_id)
        contact = s.scalar(select(Contact).where(Contact.customer_id == customer.id))
        rendered = render_reminder(
            rt,
            company,
            customer,
            contact,
            [(inv, "")],
            "overdue_firm",
            company_today(company, rt.clock),
            sample=True,
        )
        queue_test_message(s, rt.clock, company.id, OWNER, rendered)
        s.commit()
        tokens_before = len(s.scalars(select(PayToken)).all())
    drain(rt)

    text, html = parts(only(smtp, OWNER))
    sample = f"{rt.settings.base_url}/sample-link"
    assert BUTTON.findall(html) == [(sample, "Pay $120.00 now")]
    assert f"Pay online: {sample}\n" in text and f"To stop these reminders: {sample}" in text
    for shown in (text, html):
        assert "/pay/" not in shown and "/u/" not in shown
    with rt.sessions() as s:
        assert len(s.scalars(select(PayToken)).all()) == tokens_before  # no live link minted


def test_a_due_today_email_that_went_out_days_late_still_said_due_today(mail_rt, smtp):
    # The due date's step, claimed on the due date; the worker reaches it two days later (it was
    # down; or the step was claimed on a Sunday for a Saturday due date): "is due today" beside
    # "(2 days overdue)" was untrue. It goes in the first overdue step's words.
    world = build_world(mail_rt, [HARBOR], [Inv("A", "HAR", 0, "120.00")])
    assert run_reminders(mail_rt, world.company).emails == 1
    mail_rt.clock.advance(timedelta(days=2))
    world.sync()
    drain(mail_rt)
    msg = only(smtp, HARBOR.email)
    text, _html = parts(msg)
    assert "due today" not in str(msg["Subject"]) and "due today" not in text
    assert str(msg["Subject"]) == "Reminder: invoice INV-A from Acme Supply Co. is now overdue"


def test_a_due_today_email_that_goes_out_on_its_day_says_so(mail_rt, smtp):
    world = build_world(mail_rt, [HARBOR], [Inv("A", "HAR", 0, "120.00")])
    assert run_reminders(mail_rt, world.company).emails == 1
    drain(mail_rt)
    assert (
        str(only(smtp, HARBOR.email)["Subject"])
        == "Invoice INV-A from Acme Supply Co. is due today"
    )


def test_a_final_notice_counted_an_invoice_not_due_yet_as_overdue(mail_rt, smtp):
    # One email a customer a day: the final notice about A went with B's heads-up, and its subject
    # said both were overdue ("Final notice: $150.00 overdue"), B due in three days.
    world = build_world(
        mail_rt, [HARBOR], [Inv("A", "HAR", -30, "100.00"), Inv("B", "HAR", 3, "50.00")]
    )
    assert run_reminders(mail_rt, world.company).emails == 1
    drain(mail_rt)
    msg = only(smtp, HARBOR.email)
    text, _html = parts(msg)
    assert "INV-A" in text and "INV-B" in text  # both listed, each with its own due date
    assert str(msg["Subject"]) == "Final notice: $100.00 overdue to Acme Supply Co."
