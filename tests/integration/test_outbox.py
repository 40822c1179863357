"""The outbox: once per key, retries with backoff, and no double effect after a crash."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import sessionmaker

from arbridge.connectors.base import PaymentLine, PaymentWriteBack
from arbridge.errors import Rejected, Transient
from arbridge.sync import db
from arbridge.sync.db import transaction
from arbridge.sync.model import Activity, OutboxMessage
from arbridge.sync.outbox import LEASE, MAX_ATTEMPTS, Handler, deliver, enqueue
from arbridge.sync.store import ledger_connection


def queue(rt, company, key="k1", kind="test", payload=None):
    with transaction(rt.sessions) as s:
        return enqueue(
            s, rt.clock, company_id=company.id, kind=kind, key=key, payload=payload or {}
        )


def row(rt, key="k1"):
    with rt.sessions() as s:
        return s.scalar(select(OutboxMessage).where(OutboxMessage.key == key))


def test_a_key_is_queued_once(rt, demo_company):
    assert queue(rt, demo_company) is True
    assert queue(rt, demo_company) is False
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_delivered_once_and_recorded(rt, demo_company):
    calls = []
    handlers = {"test": Handler(lambda m: calls.append(m.key) or "ref-1", idempotent=False)}
    queue(rt, demo_company)
    assert deliver(rt.sessions, rt.clock, handlers) == 1
    assert deliver(rt.sessions, rt.clock, handlers) == 0
    assert calls == ["k1"]
    r = row(rt)
    assert r.status == "sent" and r.provider_ref == "ref-1" and r.sent_at == rt.clock.now()


def test_transient_failures_back_off_then_give_up(rt, demo_company, clock):
    def flaky(_m):
        raise Transient("SMTP server said 421 try later")

    handlers = {"test": Handler(flaky, idempotent=False)}
    queue(rt, demo_company)
    deliver(rt.sessions, rt.clock, handlers)
    r = row(rt)
    assert r.status == "pending" and r.attempts == 1 and "421" in r.last_error
    assert r.next_attempt_at == clock.now() + timedelta(minutes=1)
    assert deliver(rt.sessions, rt.clock, handlers) == 0  # not due yet
    for _ in range(MAX_ATTEMPTS - 1):
        clock.advance(timedelta(hours=6))
        assert deliver(rt.sessions, rt.clock, handlers) == 1
    assert row(rt).status == "dead" and row(rt).attempts == MAX_ATTEMPTS


def test_permanent_failure_is_kept_and_never_retried(rt, demo_company, clock):
    def refuse(_m):
        raise Rejected("550 mailbox unavailable")

    handlers = {"test": Handler(refuse, idempotent=False)}
    queue(rt, demo_company)
    deliver(rt.sessions, rt.clock, handlers)
    clock.advance(timedelta(days=1))
    assert deliver(rt.sessions, rt.clock, handlers) == 0
    assert row(rt).status == "failed" and "550" in row(rt).last_error
    with rt.sessions() as s:
        told = s.scalars(select(Activity.message).where(Activity.kind == "outbox.failed")).all()
    assert len(told) == 1 and "550 mailbox unavailable" in told[0]


class Crash(BaseException):
    """The process dies: nothing after this point runs (not an Exception, so nothing catches it)."""


def test_crash_between_ledger_write_and_record_never_posts_twice(rt, demo_company, clock):
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    ledger = rt.demo_ledger(conn.tenant_id)
    connector = rt.connector_for(conn)
    inv = next(
        i
        for i in ledger.read()["Invoice"]
        if i.get("status") == "AUTHORISED" and i["currencyCode"] == "USD"
    )
    key = "writeback:payment:1"
    queue(
        rt,
        demo_company,
        key=key,
        kind="ledger_payment",
        payload={
            "customer": inv["contactId"],
            "invoice": inv["id"],
            "amount": inv["balance"],
            "reference": "pi_123",
        },
    )

    def post(m):
        p = m.payload
        return connector.post_payment(
            PaymentWriteBack(
                idempotency_key=m.key,
                customer_source_id=p["customer"],
                currency="USD",
                amount=Decimal(p["amount"]),
                received_on=clock.now().date(),
                reference=p["reference"],
                lines=[PaymentLine(p["invoice"], Decimal(p["amount"]))],
            )
        )

    def post_then_crash(m):
        post(m)
        raise Crash

    with pytest.raises(Crash):
        deliver(
            rt.sessions, rt.clock, {"ledger_payment": Handler(post_then_crash, idempotent=True)}
        )
    assert row(rt, key).status == "sending"
    handlers = {"ledger_payment": Handler(post, idempotent=True)}
    assert (
        deliver(rt.sessions, rt.clock, handlers) == 0
    )  # still within the lease: another worker may own it
    clock.advance(LEASE + timedelta(seconds=1))
    assert deliver(rt.sessions, rt.clock, handlers) == 1
    r = row(rt, key)
    assert r.status == "sent" and r.attempts == 2
    payments = [p for p in ledger.read()["Payment"] if p["reference"] == "pi_123"]
    assert len(payments) == 1 and r.provider_ref == payments[0]["id"]


def test_an_email_interrupted_mid_send_is_maybe_sent_not_failed_and_never_resent(
    rt, demo_company, clock
):
    """A worker that died mid-send leaves an outcome nobody knows: 'maybe sent', shown to the
    owner, never repeated (it was recorded 'failed', as if nothing had gone out)."""
    sent = []

    def send_then_crash(m):
        sent.append(m.key)
        raise Crash

    queue(rt, demo_company, kind="email")
    with pytest.raises(Crash):
        deliver(rt.sessions, rt.clock, {"email": Handler(send_then_crash, idempotent=False)})
    clock.advance(LEASE + timedelta(seconds=1))
    deliver(
        rt.sessions,
        rt.clock,
        {"email": Handler(lambda m: sent.append(m.key) or None, idempotent=False)},
    )
    assert sent == ["k1"]
    assert row(rt).status == "maybe_sent" and "may or may not" in row(rt).last_error
    with rt.sessions() as s:
        told = s.scalars(select(Activity).where(Activity.kind == "outbox.maybe_sent")).one()
    assert "will not be repeated" in told.message


def test_the_worker_writes_a_queued_payment_into_the_ledger_once(rt, demo_company, clock):
    from arbridge.sync.outbox_kinds import OutboxKind, ledger_payment_payload
    from arbridge.worker import drain

    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    ledger = rt.demo_ledger(conn.tenant_id)
    inv = next(
        i
        for i in ledger.read()["Invoice"]
        if i.get("status") == "AUTHORISED" and i["currencyCode"] == "USD"
    )
    payload = ledger_payment_payload(
        conn,
        customer_source_id=inv["contactId"],
        currency="USD",
        amount=Decimal("10.00"),
        received_on=clock.now().date(),
        reference="pi_worker",
        lines=[(inv["id"], Decimal("10.00"))],
    )
    for _ in range(2):  # the same decision twice (a duplicate webhook, say)
        queue(
            rt,
            demo_company,
            key="ledger_payment:pi_worker",
            kind=OutboxKind.LEDGER_PAYMENT,
            payload=payload,
        )
    assert drain(rt) == (0, 1)
    assert drain(rt) == (0, 0)
    state = ledger.read()
    assert [p["amount"] for p in state["Payment"] if p["reference"] == "pi_worker"] == ["10.00"]
    assert (
        Decimal(ledger.find(state, "Invoice", inv["id"])["balance"]) == Decimal(inv["balance"]) - 10
    )


def test_a_send_still_waiting_for_the_smtp_final_reply_is_not_taken_for_a_crash():
    from arbridge.connectors.email import parse_url

    config = parse_url("smtp://mail.example")
    assert timedelta(seconds=config.data_timeout + 3 * config.timeout) < LEASE


def test_two_workers_reading_a_row_at_once_both_sent_it_on_sqlite(rt, demo_company):
    """Two workers (the demo's own and `clock advance`'s, say) each read the same due row before
    either marked it taken: SQLite has no row locks (FOR UPDATE SKIP LOCKED does nothing there),
    and the claim wrote "sending" over "sending" without looking, so the email went twice."""
    queue(rt, demo_company)
    url = rt.engine.url.render_as_string(hide_password=False)
    both_read = threading.Barrier(2, timeout=10)
    sent: list[str] = []

    def worker() -> None:
        engine = db.make_engine(url)
        waited = []

        @event.listens_for(engine, "after_cursor_execute")
        def _after(_conn, _cursor, statement, *_args) -> None:
            if (
                not waited
                and statement.lstrip().startswith("SELECT")
                and "FROM outbox" in statement
            ):
                waited.append(True)
                both_read.wait()  # each has read the row; now each tries to take it

        handlers = {"test": Handler(lambda m: sent.append(m.key) or "ref", idempotent=False)}
        try:
            deliver(sessionmaker(engine, expire_on_commit=False), rt.clock, handlers)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sent == ["k1"]
    assert row(rt).status == "sent" and row(rt).attempts == 1
