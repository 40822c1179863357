"""Ninety days of a small ledger, day by day through the real worker (sync, daily run, outbox),
with payments, a promise, a dispute and a customer in Tokyo along the way; a real SMTP server
receives the mail. The test states the exact set of messages the owner should expect."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

from sqlalchemy import select

from arbridge.clock import local_date
from arbridge.runtime import Runtime
from arbridge.services.reminders.holds import record_hold, resolve_hold
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    CallTask,
    Customer,
    Invoice,
    InvoiceHold,
    MailMessage,
    OutboxMessage,
    ReminderSend,
)
from arbridge.worker import tick
from tests.contract.email.server import smtp_server
from tests.integration.remind_support import START, Cust, Inv, build_world, chicago

CUSTOMERS = [
    Cust("HAR", "Harbor Bakery", "Alice", "alice@harbor.example"),
    Cust("MAP", "Maple Dental", "Ben", "ben@maple.example"),
    Cust("TOK", "Kyoto Tea Traders", "Kenji", "kenji@kyoto-tea.example"),
    Cust("OAK", "Oakridge Farms", "Olga", "olga@oakridge.example"),
]
INVOICES = [
    Inv("A", "HAR", 5, "500.00"),
    Inv("B", "HAR", 12, "300.00"),
    Inv("F", "HAR", -5, "75.00"),  # paused by the owner
    Inv("C", "MAP", -20, "1200.00"),
    Inv("D", "MAP", 3, "80.00"),
    Inv("E", "TOK", 1, "250.00"),
    Inv("G", "OAK", 0, "990.00"),  # the customer is "do not chase"
]

# (local date of sending in Chicago, recipient, the invoices and steps in the email).
EXPECTED = {
    (0, "ben@maple.example", (("C", "after-20"), ("D", "before-3"))),
    (0, "kenji@kyoto-tea.example", (("E", "before-3"),)),  # 08:00 in Tokyo is 17:00 here
    (1, "kenji@kyoto-tea.example", (("E", "due"),)),
    (2, "alice@harbor.example", (("A", "before-3"),)),
    (3, "ben@maple.example", (("D", "due"),)),
    (5, "kenji@kyoto-tea.example", (("E", "after-3"),)),  # Saturday's, Monday 08:00 in Tokyo
    (6, "alice@harbor.example", (("A", "due"),)),  # due on Sunday: sent Monday
    (8, "alice@harbor.example", (("A", "after-3"),)),
    (9, "alice@harbor.example", (("B", "before-3"),)),
    (10, "ben@maple.example", (("C", "after-30"),)),
    (12, "kenji@kyoto-tea.example", (("E", "after-10"),)),
    (13, "ben@maple.example", (("D", "after-10"),)),  # the promise was broken
    (15, "alice@harbor.example", (("A", "after-10"),)),
    (27, "alice@harbor.example", (("A", "after-20"),)),  # day 25 is a Saturday
    (35, "alice@harbor.example", (("A", "after-30"),)),
}
EXPECTED_CALLS = {(40, "MAP", ("C",)), (50, "HAR", ("A",))}
# Escalations reach the owner as one digest per daily run; each names who and how much.
DIGEST = "1 account needs your attention"
EXPECTED_OWNER_MAIL = [
    ("Maple Dental promised to pay invoice INV-D by Dec 4, 2026", None),
    (DIGEST, "Maple Dental has not paid INV-C ($1,200.00)"),
    ("Maple Dental has a question or dispute about invoice INV-C", None),
    (DIGEST, "Harbor Bakery has not paid INV-A ($500.00)"),
    (DIGEST, "Maple Dental has not paid INV-C ($1,200.00)"),
    (DIGEST, "Harbor Bakery has not paid INV-A ($500.00)"),
]


def day(n: int) -> date:
    return START + timedelta(days=n)


def test_ninety_days_send_exactly_the_expected_messages(settings, clock, tmp_path):
    with smtp_server(tmp_path) as server:
        rt = Runtime.open(settings.with_(smtp_url=server.url), clock)
        try:
            _simulate(rt, clock, server)
        finally:
            rt.close()


def _simulate(rt, clock, server):
    world = build_world(rt, CUSTOMERS, INVOICES, max_per_week=7)
    world.update(Invoice, world.invoice("F").id, paused=True)
    world.update(Customer, world.customer("OAK").id, do_not_chase=True)
    world.update(Customer, world.customer("TOK").id, timezone="Asia/Tokyo")

    def at(n: int, hour: int, minute: int = 0) -> None:
        clock.at = chicago(day(n), hour, minute)

    for n in range(91):
        at(n, 9)
        tick(rt, "sim-worker")
        if n == 4:  # Saturday: Maple promises to pay D by day 10
            with transaction(rt.sessions) as s:
                inv = s.get(Invoice, world.invoice("D").id)
                record_hold(s, rt, inv, "promise", promised_on=day(10))
        if n == 12:  # Sunday: B is paid after the run queued its "due" reminder for Monday
            at(n, 12)
            world.pay("B")
            with transaction(rt.sessions) as s:  # ... and Maple disputes C
                inv = s.get(Invoice, world.invoice("C").id)
                record_hold(s, rt, inv, "dispute", message="We were billed twice for May.")
        if n == 16:
            at(n, 12)
            world.pay("D")
        if n == 20:
            at(n, 12)
            world.pay("E")
        if n == 39:  # the owner settles the dispute; the sequence resumes
            with transaction(rt.sessions) as s:
                hold = s.scalar(select(InvoiceHold).where(InvoiceHold.kind == "dispute"))
                resolve_hold(s, rt, hold, "resolved: invoice is right")
        at(n, 17)
        tick(rt, "sim-worker")

    with rt.sessions() as s:
        source = {i.id: i.source_id for i in s.scalars(select(Invoice))}
        by_key = defaultdict(list)
        for r in s.scalars(select(ReminderSend).where(ReminderSend.status == "sent")):
            if r.channel == "email":
                by_key[r.outbox_key].append(r)
        mails = s.scalars(
            select(MailMessage).where(MailMessage.kind == "reminder").order_by(MailMessage.id)
        ).all()
        sent = set()
        for m in mails:
            rows = sorted(by_key[m.outbox_key], key=lambda r: source[r.invoice_id])
            n = (local_date(m.created_at, "America/Chicago") - START).days
            sent.add((n, m.to_addr, tuple((source[r.invoice_id], r.step_key) for r in rows)))
        assert len(mails) == len(sent)  # nothing twice
        assert sent == EXPECTED

        calls = {
            (
                (local_date(c.created_at, "America/Chicago") - START).days,
                s.get(Customer, c.customer_id).source_id,
                tuple(source[i] for i in c.invoice_ids),
            )
            for c in s.scalars(select(CallTask))
        }
        assert calls == EXPECTED_CALLS

        cancelled = s.scalars(select(ReminderSend).where(ReminderSend.status == "cancelled")).all()
        assert [(source[r.invoice_id], r.step_key) for r in cancelled] == [("B", "due")]
        assert "paid" in cancelled[0].note

        owner_mail = s.scalars(
            select(MailMessage).where(MailMessage.kind == "owner").order_by(MailMessage.id)
        ).all()
        assert [m.subject for m in owner_mail] == [subject for subject, _ in EXPECTED_OWNER_MAIL]
        for mail, (_subject, says) in zip(owner_mail, EXPECTED_OWNER_MAIL, strict=True):
            assert says is None or says in mail.text_body, mail.text_body
        assert all(m.to_addr == "owner@acme-supply.example" for m in owner_mail)
        stuck = s.scalars(select(OutboxMessage).where(OutboxMessage.status != "sent")).all()
        assert stuck == []

    # The SMTP server got exactly those messages, each once.
    received = [r.message for r in server.inbox.messages]
    assert sorted(str(m["Message-ID"]) for m in received) == sorted(
        m.message_id for m in [*mails, *owner_mail]
    )
    for msg in received:
        if msg["To"] != "owner@acme-supply.example":
            assert msg["List-Unsubscribe"].startswith(f"<{rt.settings.base_url}/u/")
            assert msg["Reply-To"] == "owner@acme-supply.example"
