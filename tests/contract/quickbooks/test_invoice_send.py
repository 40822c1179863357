"""Sending an unsent invoice through QuickBooks' own send (POST invoice/<id>/send?sendTo=): its
EmailStatus is synced, the send goes out once through the outbox however often it is asked
for, retried or interrupted, and QuickBooks then shows it sent."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from arbridge.services.bootstrap import outbox_handlers
from arbridge.services.delivery.send import queue_sends
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Invoice, OutboxMessage
from arbridge.sync.outbox import LEASE, deliver
from tests.contract.quickbooks.conftest import TODAY, sync


def set_up(rt, fake, connected):
    customer = fake.add_customer("Harbor Bakery")
    unsent = fake.add_invoice(
        customer, "420.00", issued=TODAY - timedelta(days=2), due=TODAY + timedelta(days=28)
    )
    sent = fake.add_invoice(
        customer, "99.00", issued=TODAY - timedelta(days=9), due=TODAY + timedelta(days=21)
    )
    fake.update_invoice(sent, EmailStatus="EmailSent")
    sync(rt, connected.conn)
    with rt.sessions() as s:
        ids = {
            source_id: (i, ledger_sent)
            for source_id, i, ledger_sent in s.execute(
                select(Invoice.source_id, Invoice.id, Invoice.ledger_sent)
            )
        }
    return customer, unsent, sent, ids


def ask(rt, company_id, *invoice_ids, **options):
    with transaction(rt.sessions) as s:
        return queue_sends(s, rt.clock, s.get(Company, company_id), invoice_ids, **options)


def invoice(rt, invoice_id):
    with rt.sessions() as s:
        return s.get(Invoice, invoice_id)


def test_email_status_is_synced_and_an_unsent_invoice_is_sent_once(rt, fake, connected):
    customer, unsent, sent, ids = set_up(rt, fake, connected)
    assert ids[unsent][1] is False and ids[sent][1] is True  # NotSet / EmailSent
    company_id, local = connected.company.id, ids[unsent][0]

    done = ask(rt, company_id, local, ids[sent][0])
    assert (done.queued, done.not_unsent) == (1, 1)  # the sent one is not sent again
    assert ask(rt, company_id, local).already == 1  # a second click queues nothing
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1
    assert fake.sent == [(unsent, f"ap@{customer}.example")]  # sendTo: the customer's address
    row = invoice(rt, local)
    assert row.sent_at == rt.clock.now() and row.ledger_sent is True and not row.is_unsent

    # Asked again, delivered again, synced back: still one email, and QuickBooks agrees.
    assert ask(rt, company_id, local).queued == 0
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 0
    sync(rt, connected.conn)
    assert invoice(rt, local).ledger_sent is True
    assert fake.records["Invoice"][unsent]["EmailStatus"] == "EmailSent"
    assert len(fake.sent) == 1


def test_an_answer_lost_after_quickbooks_sent_is_not_sent_twice(rt, fake, connected):
    _customer, unsent, _sent, ids = set_up(rt, fake, connected)
    ask(rt, connected.company.id, ids[unsent][0])
    fake.drop_after_write()  # QuickBooks sends, the connection drops before its answer
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert len(fake.sent) == 1 and invoice(rt, ids[unsent][0]).sent_at is None
    rt.clock.advance(timedelta(hours=1))
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1  # read first: sent already
    assert len(fake.sent) == 1
    assert invoice(rt, ids[unsent][0]).sent_at is not None
    with rt.sessions() as s:
        assert s.scalar(select(OutboxMessage.status)) == "sent"


def test_a_worker_that_died_mid_send_is_recovered_without_a_second_email(rt, fake, connected):
    _customer, unsent, _sent, ids = set_up(rt, fake, connected)
    ask(rt, connected.company.id, ids[unsent][0])
    fake.drop_after_write()
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    # As if the worker had claimed the retry and died in the call: the row stays "sending".
    with transaction(rt.sessions) as s:
        s.execute(update(OutboxMessage).values(status="sending", next_attempt_at=rt.clock.now()))
    rt.clock.advance(LEASE + timedelta(minutes=1))
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1  # idempotent: retried
    assert len(fake.sent) == 1
    with rt.sessions() as s:
        assert s.scalar(select(OutboxMessage.status)) == "sent"


def test_an_invoice_sent_from_quickbooks_meanwhile_is_not_sent_again(rt, fake, connected):
    _customer, unsent, _sent, ids = set_up(rt, fake, connected)
    ask(rt, connected.company.id, ids[unsent][0])
    fake.update_invoice(unsent, EmailStatus="EmailSent")  # the owner pressed Send in QuickBooks
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1
    assert fake.sent == []


def test_a_send_held_by_a_dead_grant_goes_once_after_reconnecting(rt, fake, connected):
    from arbridge.connectors.quickbooks import Grant
    from arbridge.sync.quickbooks_store import attach

    _customer, unsent, _sent, ids = set_up(rt, fake, connected)
    fake.revoke_everything()  # the owner's grant died
    ask(rt, connected.company.id, ids[unsent][0])
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with rt.sessions() as s:
        row = s.scalar(select(OutboxMessage))
        assert row.status == "failed" and row.last_error.startswith("AuthExpired:")
    access, refresh = fake.issue_grant()
    with transaction(rt.sessions) as s:
        company = s.get(Company, connected.company.id)
        grant = Grant(access, refresh, rt.clock.now() + timedelta(hours=1), None)
        attach(s, rt.keyring, rt.clock, company, fake.realm_id, grant)
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == 1
    assert [i for i, _to in fake.sent] == [unsent]


def test_the_invoice_goes_to_its_own_bill_email_or_else_to_the_customers_address(
    rt, fake, connected
):
    customer, unsent, _sent, ids = set_up(rt, fake, connected)
    fake.update_invoice(unsent, BillEmail={"Address": "invoices@harbor-bakery.example"})
    bare = fake.add_invoice(
        customer, "75.00", issued=TODAY - timedelta(days=1), due=TODAY + timedelta(days=29)
    )
    fake.update_invoice(bare, BillEmail=None)
    sync(rt, connected.conn)
    with rt.sessions() as s:
        bare_id = s.scalar(select(Invoice.id).where(Invoice.source_id == bare))
    ask(rt, connected.company.id, ids[unsent][0], bare_id)
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    assert sorted(fake.sent) == sorted(
        [(unsent, "invoices@harbor-bakery.example"), (bare, f"ap@{customer}.example")]
    )
    calls = [c for c in fake.send_calls if c[0] == unsent]
    assert calls == [(unsent, None)]  # no sendTo: QuickBooks keeps the invoice's own address
