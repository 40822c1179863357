"""The daily run and the email handler: exactly once, never wrong, and what users of tools like
ours complain about (../shared/API_FACTS.md), each as a test."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from arbridge.errors import NotFound
from arbridge.runtime import Runtime
from arbridge.services.payments.quote import quote
from arbridge.services.reminders.holds import record_hold
from arbridge.services.reminders.run import run_reminders
from arbridge.services.reminders.unsubscribe import unsubscribe
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Activity,
    Connection,
    Contact,
    Customer,
    Invoice,
    InvoiceHold,
    MailMessage,
    OutboxMessage,
    PayToken,
    ReminderSend,
)
from arbridge.sync.outbox import LEASE, Handler, deliver, enqueue
from arbridge.sync.store import (
    find_pay_token,
    hash_token,
    issue_pay_token,
    issue_statement_token,
)
from arbridge.worker import drain, tick
from tests.contract.email.server import smtp_server
from tests.integration.remind_support import START, Cust, Inv, World, build_world, chicago

HARBOR = Cust("HAR", "Harbor Bakery", "Alice", "alice@harbor.example")
MAPLE = Cust("MAP", "Maple Dental", "Ben", "ben@maple.example")


@pytest.fixture
def smtp(tmp_path):
    with smtp_server(tmp_path) as server:
        yield server


@pytest.fixture
def mail_rt(settings, clock, smtp):
    rt = Runtime.open(settings.with_(smtp_url=smtp.url), clock)
    yield rt
    rt.close()


def world_of(rt, *invoices: Inv, customers=(HARBOR, MAPLE), **reminders) -> World:
    return build_world(rt, list(customers), list(invoices), **reminders)


def count(rt, model, *where) -> int:
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def kinds(rt) -> list[str]:
    with rt.sessions() as s:
        return list(s.scalars(select(Activity.kind).order_by(Activity.id)))


def test_the_daily_run_twice_and_a_restarted_worker_send_once(mail_rt, smtp):
    world = world_of(mail_rt, Inv("A", "HAR", -3, "100.00"), Inv("B", "HAR", -10, "50.00"))
    company = world.company
    assert run_reminders(mail_rt, company).emails == 1
    assert run_reminders(mail_rt, company).emails == 0
    drain(mail_rt)
    drain(mail_rt)
    assert run_reminders(mail_rt, company).emails == 0  # a worker restarted after sending
    [msg] = [r.message for r in smtp.inbox.messages]
    # One email lists both invoices; the highest step (after-10) chose the wording.
    assert msg["Subject"] == "Second reminder: $150.00 overdue to Acme Supply Co."
    body = msg.get_body(("plain",)).get_content()
    assert "INV-A" in body and "INV-B" in body
    assert count(mail_rt, ReminderSend) == 2


def test_one_email_about_two_invoices_read_as_two_alike_emails_in_the_activity(mail_rt, smtp):
    world = world_of(mail_rt, Inv("A", "HAR", -3, "100.00"), Inv("B", "HAR", -10, "50.00"))
    run_reminders(mail_rt, world.company)
    drain(mail_rt)
    with mail_rt.sessions() as s:
        said = sorted(
            s.scalars(select(Activity.message).where(Activity.kind == "reminders.sent")).all()
        )
    # Each line names its invoice; the wording is the email's, the step each invoice's own.
    assert said == [
        "Second reminder (10 days after due) sent to alice@harbor.example about INV-B",
        "Second reminder (its step 3 days after due) sent to alice@harbor.example about INV-A",
    ]


def test_a_drain_sends_its_emails_over_one_connection_and_closes_it(mail_rt, smtp):
    world = world_of(mail_rt, Inv("A", "HAR", -3, "100.00"), Inv("B", "MAP", -10, "50.00"))
    assert run_reminders(mail_rt, world.company).emails == 2
    drain(mail_rt)
    assert sorted(m.rcpt_tos[0] for m in smtp.inbox.messages) == [
        "alice@harbor.example",
        "ben@maple.example",
    ]
    # One connection (one greeting) for both, and a QUIT once the outbox was empty.
    assert (smtp.inbox.ehlos, smtp.inbox.quits) == (1, 1)


class Crash(BaseException):
    """The process dies here: nothing after this runs."""


def test_a_crash_between_sending_and_recording_never_sends_twice(mail_rt, smtp, clock):
    from arbridge.services.bootstrap import outbox_handlers

    world_of(mail_rt, Inv("A", "HAR", -3, "100.00"))
    tick(mail_rt, "w")  # sync, daily run, and the send... but first, a crash after the send:
    assert len(smtp.inbox.messages) == 1
    # Queue another day's reminder and crash right after the SMTP server accepted it.
    clock.at = chicago(START + timedelta(days=7))
    real = outbox_handlers(mail_rt)["email"]

    def send_then_crash(message):
        real.send(message)
        raise Crash

    tick_jobs_only(mail_rt)
    with pytest.raises(Crash):
        deliver(
            mail_rt.sessions,
            clock,
            {"email": Handler(send_then_crash, idempotent=False, done=real.done)},
        )
    assert len(smtp.inbox.messages) == 2
    clock.advance(LEASE + timedelta(minutes=1))
    drain(mail_rt)  # the restarted worker finds the row still "sending"
    assert len(smtp.inbox.messages) == 2
    with mail_rt.sessions() as s:
        unknown = s.scalars(select(OutboxMessage).where(OutboxMessage.status == "maybe_sent")).one()
        assert "may or may not have gone out" in unknown.last_error


def tick_jobs_only(rt) -> None:
    from arbridge.worker import JOBS, claim_and_run

    for job in JOBS:
        while claim_and_run(rt, job, "w"):
            pass


def test_a_greylisting_server_is_retried_with_backoff(mail_rt, smtp, clock):
    world_of(mail_rt, Inv("A", "HAR", -3, "100.00"))
    smtp.inbox.defer_next = 2
    tick(mail_rt, "w")
    with mail_rt.sessions() as s:
        row = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")).one()
        assert (row.status, row.attempts) == ("pending", 1) and "451" in row.last_error
    clock.advance(timedelta(minutes=1))
    drain(mail_rt)
    clock.advance(timedelta(minutes=2))
    drain(mail_rt)
    assert len(smtp.inbox.messages) == 1
    assert count(mail_rt, ReminderSend, ReminderSend.status == "sent") == 1


def test_a_bounce_marks_the_contact_tells_the_owner_and_stops_reminders(mail_rt, smtp, clock):
    bouncy = Cust("BNC", "Beacon Brewing", "Bea", "bounce-bea@beacon.example")
    world = world_of(mail_rt, Inv("A", "BNC", -3, "100.00"), customers=(bouncy,))
    tick(mail_rt, "w")
    with mail_rt.sessions() as s:
        contact = s.scalars(select(Contact)).one()
        assert contact.bounced_at == clock.now()
        assert s.scalars(select(ReminderSend)).one().status == "failed"
        owner_mail = s.scalars(select(MailMessage).where(MailMessage.kind == "owner")).one()
        assert owner_mail.subject == "A reminder to bounce-bea@beacon.example bounced"
    assert "email.bounced" in kinds(mail_rt)
    # The owner's notice went out; nothing more goes to the bounced address.
    assert [str(m.message["To"]) for m in smtp.inbox.messages] == ["owner@acme-supply.example"]
    clock.at = chicago(START + timedelta(days=7))
    tick(mail_rt, "w")
    assert [str(m.message["To"]) for m in smtp.inbox.messages] == ["owner@acme-supply.example"]
    assert world.company.id


def test_a_broken_connection_holds_every_send_and_tells_the_owner(rt, clock):
    world = world_of(rt, Inv("A", "HAR", -3, "100.00"))
    # The refresh token died (Xero's 60 days): the sync cannot run.
    with transaction(rt.sessions) as s:
        s.get(Connection, world.conn_id).status = "needs_reconnect"
    result = run_reminders(rt, world.company)
    assert result.hold and "needs reconnect" in result.hold
    assert count(rt, ReminderSend) == 0
    with rt.sessions() as s:
        held = s.scalars(select(Activity).where(Activity.kind == "reminders.held")).one()
        assert "Nothing is sent until the ledger syncs again" in held.message
        [told] = s.scalars(select(OutboxMessage)).all()
        assert told.payload["to"] == "owner@acme-supply.example"
        assert told.payload["subject"] == "Reminders are on hold: your ledger needs attention"
    run_reminders(rt, world.company)  # the owner is told once a day, not on every try
    assert count(rt, OutboxMessage) == 1


def test_a_queued_reminder_waits_while_the_connection_is_broken(rt, clock):
    world = world_of(rt, Inv("A", "HAR", -4, "100.00"))
    tomorrow = START + timedelta(days=1)
    clock.at = chicago(tomorrow, 6)  # before the sending window
    assert run_reminders(rt, world.company).emails == 1
    with transaction(rt.sessions) as s:
        s.get(Connection, world.conn_id).status = "needs_reconnect"
    clock.at = chicago(tomorrow, 10)
    drain(rt)
    with rt.sessions() as s:
        row = s.scalars(select(OutboxMessage)).one()
        assert row.status == "pending" and row.last_error.startswith("held:")
    assert count(rt, MailMessage) == 0


def test_a_stale_sync_is_refreshed_first_so_an_invoice_paid_meanwhile_is_not_reminded(rt, clock):
    world = world_of(rt, Inv("A", "HAR", -3, "100.00"), Inv("B", "MAP", -3, "70.00"))
    clock.advance(timedelta(hours=5))  # the last sync is five hours old
    world.pay("A")  # paid in the ledger; arbridge has not seen it yet
    assert run_reminders(rt, world.company).emails == 1
    with rt.sessions() as s:
        conn = s.get(Connection, world.conn_id)
        assert conn.last_sync_at == clock.now()
        [send] = s.scalars(select(ReminderSend)).all()
        assert world.invoice("B").id == send.invoice_id


def test_paid_between_the_decision_and_the_send_is_cancelled(rt, clock):
    world = world_of(rt, Inv("A", "HAR", -4, "100.00"))
    tomorrow = START + timedelta(days=1)
    clock.at = chicago(tomorrow, 6)  # before the sending window opens at 08:00
    assert run_reminders(rt, world.company).emails == 1
    world.pay("A")
    clock.at = chicago(tomorrow, 8, 30)  # the last sync is 2.5 hours old: synced again first
    drain(rt)
    assert count(rt, MailMessage) == 0
    with rt.sessions() as s:
        send = s.scalars(select(ReminderSend)).one()
        assert send.status == "cancelled" and "paid" in send.note


def test_payment_pending_disputed_promised_paused_are_not_reminded(rt):
    world = world_of(
        rt,
        Inv("P", "HAR", -3, "10.00"),
        Inv("D", "HAR", -3, "20.00"),
        Inv("R", "HAR", -3, "30.00"),
        Inv("Z", "HAR", -3, "40.00"),
        Inv("OK", "MAP", -3, "50.00"),
    )
    from arbridge.sync.model import Invoice

    world.update(Invoice, world.invoice("P").id, payment_pending=True)  # ACH still clearing
    world.update(Invoice, world.invoice("Z").id, paused=True)
    with transaction(rt.sessions) as s:
        record_hold(s, rt, s.get(Invoice, world.invoice("D").id), "dispute", message="Wrong qty")
        record_hold(s, rt, s.get(Invoice, world.invoice("R").id), "promise", promised_on=START)
    run_reminders(rt, world.company)
    with rt.sessions() as s:
        sent = {s.get(Invoice, r.invoice_id).source_id for r in s.scalars(select(ReminderSend))}
    assert sent == {"OK"}


def test_unsubscribed_contacts_get_no_more_reminders(rt, clock):
    world = world_of(rt, Inv("A", "HAR", -3, "100.00"))
    tick(rt, "w")
    assert count(rt, MailMessage, MailMessage.kind == "reminder") == 1
    with transaction(rt.sessions) as s:
        contact = s.scalars(select(Contact).where(Contact.email == HARBOR.email)).one()
        unsubscribe(s, rt, contact.id)
    clock.at = chicago(START + timedelta(days=7))
    tick(rt, "w")
    assert count(rt, MailMessage, MailMessage.kind == "reminder") == 1
    assert "reminders.unsubscribed" in kinds(rt)
    assert world.company.id


def test_at_most_the_weekly_number_of_reminders_reaches_a_contact(rt, clock):
    world = world_of(
        rt,
        Inv("A", "HAR", -3, "100.00"),  # after-3 today
        Inv("B", "HAR", 1, "60.00"),  # due tomorrow
        Inv("C", "HAR", 3, "70.00"),  # due in 3 days
        max_per_week=2,
    )
    sent_days = []
    for n in range(0, 12):
        clock.at = chicago(START + timedelta(days=n))
        tick(rt, "w")
        with rt.sessions() as s:
            total = s.scalar(
                select(func.count()).select_from(MailMessage).where(MailMessage.kind == "reminder")
            )
        if total > len(sent_days):
            sent_days += [n] * (total - len(sent_days))
    # Never more than two in any seven days, however many steps came due.
    for i, n in enumerate(sent_days):
        assert len([m for m in sent_days[i:] if m < n + 7]) <= 2
    assert len(sent_days) >= 3
    assert world.company.id


def test_across_the_spring_daylight_saving_change(rt, clock):
    # Due on Sunday 14 March 2027, the day clocks go forward in Chicago.
    due = date(2027, 3, 14)
    world = world_of(rt, Inv("A", "HAR", (due - START).days, "100.00"))
    for n in range(-4, 2):
        d = due + timedelta(days=n)
        for hour in (9, 17):
            clock.at = chicago(d, hour)
            tick(rt, "w")
    with rt.sessions() as s:
        rows = s.scalars(select(MailMessage).order_by(MailMessage.id)).all()
        sends = s.scalars(select(ReminderSend).order_by(ReminderSend.id)).all()
    assert [r.step_key for r in sends] == ["before-3", "due"]
    # before-3 went out Thursday at 09:00 CST (15:00 UTC); "due" was decided on Sunday and
    # sent at Monday's first tick after 08:00 CDT: 09:00 CDT is 14:00 UTC.
    assert [m.created_at for m in rows] == [
        datetime(2027, 3, 11, 15, 0, tzinfo=UTC),
        datetime(2027, 3, 15, 14, 0, tzinfo=UTC),
    ]
    assert world.company.id


def test_the_activity_log_records_balance_and_sync_time_of_every_message(rt, clock):
    world_of(rt, Inv("A", "HAR", -3, "100.00"))
    tick(rt, "w")
    with rt.sessions() as s:
        sent = s.scalars(select(Activity).where(Activity.kind == "reminders.sent")).one()
        conn = s.scalars(select(Connection)).one()
    assert sent.data["balance_minor"] == 100_00 and sent.data["currency"] == "USD"
    assert sent.data["synced_at"] == conn.last_sync_at.isoformat()
    assert sent.data["message_id"].startswith("<")


def test_a_bad_sequence_in_the_settings_holds_reminders_with_a_sentence(rt):
    world = world_of(rt, Inv("A", "HAR", -3, "100.00"))
    world.set_reminders(sequences={"default": [{"offset_days": "soon"}]})
    result = run_reminders(rt, world.company)
    assert result.hold == "step 1: the number of days must be a whole number"
    assert count(rt, OutboxMessage) == 0


def test_a_promise_resolves_kept_when_paid(rt, clock):
    world = world_of(rt, Inv("A", "HAR", -3, "100.00"))
    from arbridge.sync.model import Invoice

    with transaction(rt.sessions) as s:
        record_hold(s, rt, s.get(Invoice, world.invoice("A").id), "promise", promised_on=START)
    world.pay("A")
    world.sync()
    run_reminders(rt, world.company)
    with rt.sessions() as s:
        hold = s.scalars(select(InvoiceHold)).one()
    assert hold.resolution == "kept"


def test_monthly_statements_list_every_open_invoice_once_a_month(rt, clock):
    world = world_of(
        rt,
        Inv("A", "HAR", 20, "100.00"),
        Inv("B", "HAR", 40, "25.50"),
        Inv("C", "MAP", 30, "70.00"),
        statement_day=1,
    )
    world.pay("C")
    for when in (date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 2)):
        for hour in (9, 17):
            clock.at = chicago(when, hour)
            tick(rt, "w")
    with rt.sessions() as s:
        statements = s.scalars(select(MailMessage).where(MailMessage.kind == "statement")).all()
    [statement] = statements  # Maple paid: nothing open, no statement
    assert statement.to_addr == HARBOR.email
    assert statement.subject == "Your statement from Acme Supply Co.: $125.50 open"
    assert "INV-A" in statement.text_body and "INV-B" in statement.text_body
    assert f"Pay them all together: {rt.settings.base_url}/pay/" in statement.text_body
    clock.at = chicago(date(2027, 1, 4))
    tick(rt, "w")  # statements go out on the chosen day of the month only
    assert count(rt, MailMessage, MailMessage.kind == "statement") == 1


def test_an_agency_step_refers_the_account_and_stops_automatic_reminders(rt, clock):
    world = world_of(rt, Inv("A", "HAR", -8, "100.00"))
    world.set_reminders(
        sequences={
            "default": [
                {"offset_days": 3, "template": "overdue"},
                {"offset_days": 10, "template": "final_notice", "escalation": "agency"},
            ]
        }
    )
    tick(rt, "w")  # 8 days late: after-3
    clock.at = chicago(START + timedelta(days=2))  # 10 days late: the final notice, then referral
    tick(rt, "w")
    with rt.sessions() as s:
        from arbridge.sync.model import CustomerReminderSettings

        pref = s.scalars(select(CustomerReminderSettings)).one()
        assert pref.referred_to_agency_at == clock.now()
        subjects = [m.subject for m in s.scalars(select(MailMessage).order_by(MailMessage.id))]
    assert subjects[:2] == [
        "Second reminder: $100.00 overdue to Acme Supply Co.",
        "Final notice: $100.00 overdue to Acme Supply Co.",
    ]
    assert "1 account needs your attention" in subjects
    with rt.sessions() as s:
        digest = s.scalar(select(MailMessage).where(MailMessage.subject.like("%your attention")))
    assert "Harbor Bakery has not paid" in digest.text_body and "$100.00" in digest.text_body
    assert "reminders.agency" in kinds(rt)
    # A new invoice for the referred customer is not chased.
    world.ledger.add_invoice(
        invoiceNumber="INV-N",
        contactId="HAR",
        date="2026-10-01",
        dueDate="2026-11-20",
        currencyCode="USD",
        currencyRate="1",
        total="40.00",
    )
    clock.at = chicago(START + timedelta(days=3))
    tick(rt, "w")
    assert count(rt, ReminderSend) == 2


def test_the_day_is_the_business_day_not_the_utc_day(rt, clock):
    # 20:00 in Chicago on the 24th is already the 25th in UTC. Due on the 28th, the invoice is
    # four days out in Chicago (no step yet), though three days out by the UTC calendar.
    world = world_of(rt, Inv("A", "HAR", 4, "100.00"))
    clock.at = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    assert run_reminders(rt, world.company).emails == 0
    clock.at = chicago(START + timedelta(days=1), 9)
    assert run_reminders(rt, world.company).emails == 1


def test_unsubscribing_stops_reminders_not_receipts(rt, clock):
    from arbridge.sync.outbox import enqueue

    world = world_of(rt, Inv("A", "HAR", -3, "100.00"))
    with transaction(rt.sessions) as s:
        contact = s.scalars(select(Contact).where(Contact.email == HARBOR.email)).one()
        unsubscribe(s, rt, contact.id)
        # A receipt, as the payments code queues it (issue 4).
        enqueue(
            s,
            rt.clock,
            company_id=world.company.id,
            kind="email",
            key="receipt:pi_1",
            payload={
                "to": HARBOR.email,
                "subject": "Receipt from Acme Supply Co.: $100.00",
                "text": "Thank you.",
                "mail": "receipt",
                "customer_id": contact.customer_id,
            },
        )
    tick(rt, "w")
    with rt.sessions() as s:
        [m] = s.scalars(select(MailMessage)).all()
    assert (m.kind, m.to_addr) == ("receipt", HARBOR.email)
    assert "List-Unsubscribe" not in m.headers


def test_a_late_final_smtp_reply_is_maybe_sent_told_to_the_owner_and_never_resent(
    settings, clock, smtp
):
    quick = smtp.url.replace("timeout=5", "timeout=0.5") + "&data_timeout=0.5"
    rt = Runtime.open(settings.with_(smtp_url=quick), clock)
    try:
        world_of(rt, Inv("A", "HAR", -3, "100.00"))
        smtp.inbox.slow_final_reply = 2.0
        tick(rt, "w")  # the reminder arrives; its "250" comes too late (the owner's notice too)
        smtp.inbox.slow_final_reply = 0.0
        for _ in range(3):  # later worker passes: nothing is retried
            clock.advance(LEASE + timedelta(hours=1))
            drain(rt)
        reminders = [m for m in smtp.inbox.messages if "alice" in str(m.message["To"])]
        assert len(reminders) == 1
        with rt.sessions() as s:
            row = s.scalars(select(OutboxMessage).where(OutboxMessage.key.like("reminder:%"))).one()
            assert row.status == "maybe_sent" and row.attempts == 1
            assert "may have been delivered" in row.last_error
            # Recorded as sent (the next step is not a repeat of this one) and in the mailbox.
            assert s.scalars(select(ReminderSend)).one().status == "sent"
            mail = s.scalars(select(MailMessage).where(MailMessage.kind == "reminder")).one()
            assert mail.transport == "smtp-maybe"
        assert "outbox.maybe_sent" in kinds(rt)
        # The owner is told, by email too.
        owner_mail = [m for m in smtp.inbox.messages if "owner@" in str(m.message["To"])]
        assert [m.message["Subject"] for m in owner_mail] == [
            "Check: a reminder to alice@harbor.example may not have gone out"
        ]
    finally:
        rt.close()


def _links(text: str, base: str) -> list[str]:
    return re.findall(re.escape(base) + r"/pay/([A-Za-z0-9_-]+)", text)


def _link_row(rt, token: str) -> PayToken:
    with rt.sessions() as s:
        row = find_pay_token(s, token)
        s.expunge(row)
        return row


def test_queued_reminders_keep_no_pay_or_statement_token_and_the_links_work_when_sent(rt, clock):
    world_of(rt, Inv("A", "HAR", -3, "100.00"), statement_day=24)
    tick_jobs_only(rt)  # queued (before 8:00 nothing goes out: the clock is at 9:00, so drain)
    with rt.sessions() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")).all()
        payloads = [json.dumps(r.payload) for r in rows]
        hashes = set(s.scalars(select(PayToken.token_hash)))
    assert rows
    for text in payloads:
        assert "_token" not in text  # neither pay_token nor statement_token
    drain(rt)
    with rt.sessions() as s:
        mails = s.scalars(select(MailMessage).where(MailMessage.kind != "owner")).all()
    tokens = [t for m in mails for t in _links(m.text_body, rt.settings.base_url)]
    assert tokens
    for token in tokens:
        assert hash_token(token) not in hashes  # minted at send time, not before
        row = _link_row(rt, token)
        with rt.sessions() as s:
            assert quote(rt, s, row).state == "payable"


def test_a_queued_link_opens_nothing_before_it_is_minted(rt, clock, client):
    world_of(rt, Inv("A", "HAR", -3, "100.00"), Inv("B", "HAR", -5, "50.00"), statement_day=24)
    tick_jobs_only(rt)  # queued: the links' rows hold stand-ins, not hashes of any token
    with rt.sessions() as s:
        stand_ins = list(s.scalars(select(PayToken.token_hash)))
        assert len(stand_ins) >= 3 and len(set(stand_ins)) == len(stand_ins)
        for stand_in in stand_ins:
            assert not re.fullmatch(r"[0-9a-f]{64}", stand_in)  # no token hashes to it
            with pytest.raises(NotFound):
                find_pay_token(s, stand_in)
    assert client.get(f"/pay/{stand_ins[0]}").status_code == 404


def test_a_statement_link_lasts_from_the_email_that_carries_it(rt, clock):
    world = world_of(rt, Inv("A", "HAR", 20, "100.00"), statement_day=1)
    world.set_reminders(statement_link_days=30)
    clock.at = chicago(date(2026, 12, 1), 6)
    tick_jobs_only(rt)  # queued at 6:00, goes out at 8:00 (the sending window)
    clock.at = chicago(date(2026, 12, 1), 9)
    drain(rt)
    with rt.sessions() as s:
        statement = s.scalars(select(MailMessage).where(MailMessage.kind == "statement")).one()
    [token] = set(_links(statement.text_body, rt.settings.base_url)) - set()
    row = _link_row(rt, token)
    assert row.invoice_id is None
    assert row.expires_at == chicago(date(2026, 12, 1), 9) + timedelta(days=30)


def test_an_email_queued_before_the_upgrade_still_sends_with_its_stored_token(rt, clock):
    world = world_of(rt, Inv("A", "HAR", -3, "100.00"))
    inv = world.invoice("A")
    with transaction(rt.sessions) as s:
        pay = issue_pay_token(s, rt.clock, s.get(Invoice, inv.id))
        cust = s.get(Customer, inv.customer_id)
        statement = issue_statement_token(s, rt.clock, cust)
        contact = s.scalars(select(Contact).where(Contact.customer_id == cust.id)).first()
        enqueue(
            s,
            rt.clock,
            company_id=world.company.id,
            kind="email",
            key="reminder:old-format",
            payload={  # the shape queued by earlier versions
                "statement_token": statement,
                "mail": "reminder",
                "customer_id": cust.id,
                "contact_id": contact.id,
                "template": "overdue",
                "step_key": "after-3",
                "invoices": [{"id": inv.id, "step_key": "after-3", "pay_token": pay}],
            },
        )
    drain(rt)
    with rt.sessions() as s:
        mail = s.scalars(
            select(MailMessage).where(MailMessage.outbox_key == "reminder:old-format")
        ).one()
    assert f"/pay/{pay}" in mail.text_body


@pytest.mark.usefixtures("short_template_time_limit")
def test_a_template_that_burns_cpu_holds_the_reminder_with_the_reason(rt, clock):
    world = world_of(rt, Inv("A", "HAR", -3, "100.00"))
    burner = "{% for a in range(9999) %}{% for b in range(9999) %}{% endfor %}{% endfor %}"
    world.set_reminders(
        templates={"overdue_friendly": {"subject": "Pay", "text": burner, "html": ""}}
    )
    tick(rt, "w")
    with rt.sessions() as s:
        row = s.scalars(select(OutboxMessage).where(OutboxMessage.key.like("reminder:%"))).one()
        assert row.status == "pending"  # held: it goes out once the wording is fixed
        assert "the template takes too long to render" in row.last_error
        send = s.scalars(select(ReminderSend)).one()
        assert send.status == "queued" and "too long" in (send.note or "")
        notices = s.scalars(select(MailMessage).where(MailMessage.kind == "owner")).all()
        assert [m.subject for m in notices] == ["A reminder is held: its wording does not render"]
    assert "reminders.held" in kinds(rt)
    world.set_reminders(templates={})
    clock.advance(timedelta(minutes=5))
    drain(rt)
    with rt.sessions() as s:
        assert s.scalars(select(ReminderSend)).one().status == "sent"
        assert len(s.scalars(select(MailMessage).where(MailMessage.kind == "owner")).all()) == 1


def test_the_monthly_statement_lists_what_its_link_charges_not_paused_or_disputed_invoices(
    rt, clock
):
    world = world_of(
        rt,
        Inv("A", "HAR", 20, "100.00"),
        Inv("B", "HAR", 40, "25.50"),
        Inv("C", "HAR", 30, "70.00"),
        statement_day=1,
    )
    world.update(Invoice, world.invoice("B").id, paused=True)
    with transaction(rt.sessions) as s:
        record_hold(s, rt, s.get(Invoice, world.invoice("C").id), "dispute", message="Wrong")
    clock.at = chicago(date(2026, 12, 1), 9)
    tick(rt, "w")
    with rt.sessions() as s:
        statement = s.scalars(select(MailMessage).where(MailMessage.kind == "statement")).one()
    assert statement.subject == "Your statement from Acme Supply Co.: $100.00 open"
    assert "INV-A" in statement.text_body
    assert "INV-B" not in statement.text_body and "INV-C" not in statement.text_body
