"""The re-check before a monthly statement goes out is its own step, apart from the email: it
decides whether the statement still goes (and what it lists) without rendering anything, so an
SMS statement would reuse it as it is."""

from __future__ import annotations

from sqlalchemy import select

from arbridge.services.messaging.outgoing import Held
from arbridge.services.reminders.recheck import StatementDue, recheck_statement
from arbridge.services.reminders.statements import prepare_statement
from arbridge.sync.db import transaction
from arbridge.sync.model import Contact, OutboxMessage
from arbridge.sync.outbox import enqueue
from tests.integration.remind_support import Cust, Inv, build_world

HARBOR = Cust("HAR", "Harbor Bakery", "Alice", "alice@harbor.example")


def queued_statement(rt, world) -> OutboxMessage:
    customer = world.customer("HAR")
    with transaction(rt.sessions) as s:
        contact = s.scalar(select(Contact).where(Contact.customer_id == customer.id))
        key = f"statement:c{customer.id}:2026-12"
        enqueue(
            s,
            rt.clock,
            company_id=world.company.id,
            kind="email",
            key=key,
            payload={"mail": "statement", "customer_id": customer.id, "contact_id": contact.id},
        )
        message = s.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
        s.expunge(message)
    return message


def recheck(rt, message):
    with transaction(rt.sessions) as s:
        return recheck_statement(s, rt, message)


def test_the_recheck_lists_what_is_open_without_rendering(rt):
    world = build_world(rt, [HARBOR], [Inv("A", "HAR", 20, "100.00"), Inv("B", "HAR", 5, "9.50")])
    message = queued_statement(rt, world)
    # Wording that cannot render holds the email, and does not touch the re-check.
    world.set_reminders(templates={"statement": {"subject": "{{ broken", "text": "x"}})
    due = recheck(rt, message)
    assert isinstance(due, StatementDue)
    assert sorted(i.number for i in due.invoices) == ["INV-A", "INV-B"]
    assert due.contact.email == HARBOR.email and due.token
    assert isinstance(prepare_statement(rt, message), Held)


def test_the_recheck_cancels_when_nothing_is_open_any_more(rt):
    world = build_world(rt, [HARBOR], [Inv("A", "HAR", 20, "100.00")])
    message = queued_statement(rt, world)
    world.pay("A")
    world.sync()
    assert recheck(rt, message) == "cancelled: nothing open any more"


def test_the_recheck_cancels_when_the_contact_unsubscribed(rt):
    world = build_world(rt, [HARBOR], [Inv("A", "HAR", 20, "100.00")])
    message = queued_statement(rt, world)
    with transaction(rt.sessions) as s:
        contact = s.get(Contact, message.payload["contact_id"])
        contact.opted_out_at = rt.clock.now()
    assert recheck(rt, message) == "cancelled: no usable contact"
