"""The webhook inbox: each event stored once, processed once, failures kept and retried."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DataError

from arbridge.errors import Transient
from arbridge.sync.db import make_engine, transaction
from arbridge.sync.model import Activity, WebhookDelivery, WebhookEvent
from arbridge.sync.store import ledger_connection, log_activity
from arbridge.webhooks import inbox
from arbridge.webhooks.dispatch import process_pending
from arbridge.webhooks.inbox import InboxEvent, _prepared, store, store_alone
from tests.builders import SmallCompany
from tests.payment_sequences import deliver, redeliver
from tests.web.test_query_counts import counted

BODY = b'{"id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "type": "checkout.session.completed"}'


def event(event_id="evt_1NG8Du2eZvKYlo2CUI79vXWy", kind="invoice.updated", tenant="demobooks-acme"):
    return InboxEvent(
        event_id=event_id, event_type=kind, tenant_id=tenant, payload={"id": event_id}
    )


@pytest.fixture
def company(rt):
    """A company whose ledger connection has the tenant id the events name."""
    books = (
        SmallCompany(slug="acme", name="Acme Supply Co.", tenant_id="demobooks-acme")
        .customer("C1", "Harbor Bakery")
        .invoice("I1", "C1", "120.00", bucket="31_60")
        .build(rt)
    )
    return books.company


def count(rt, model, *where):
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_a_duplicate_delivery_stores_the_event_once(rt, company):
    with transaction(rt.sessions) as s:
        first = store(
            s,
            rt.clock,
            "demo",
            {"Authorization": "secret", "Content-Type": "application/json"},
            BODY,
            [event()],
        )
    with transaction(rt.sessions) as s:
        second = store(s, rt.clock, "demo", {}, BODY, [event()])
    assert (first.new, first.duplicates, second.new, second.duplicates) == (1, 0, 0, 1)
    # The same bytes again: the body is kept once and the repeat counted (issue 8).
    assert count(rt, WebhookEvent) == 1 and count(rt, WebhookDelivery) == 1
    assert first.delivery_id == second.delivery_id
    with rt.sessions() as s:
        stored = s.scalar(select(WebhookEvent))
        delivery = s.get(WebhookDelivery, first.delivery_id)
    assert stored.company_id == company.id  # routed by the connection's tenant id
    assert delivery.headers == {"content-type": "application/json"}  # no Authorization kept
    assert delivery.body == BODY.decode() and delivery.repeats == 1


def test_concurrent_duplicates_meet_the_unique_constraint(rt, company):
    barrier = threading.Barrier(4)
    results = []

    def deliver():
        barrier.wait()
        with transaction(rt.sessions) as s:
            results.append(store(s, rt.clock, "demo", {}, BODY, [event()]).new)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 0, 0, 1]
    assert count(rt, WebhookEvent) == 1


def test_events_are_processed_once_and_unknown_types_ignored(rt, company):
    seen = []

    def handle(session, ev):
        seen.append(ev.event_id)
        log_activity(session, rt.clock, ev.company_id, "test.handled", ev.event_id)

    with transaction(rt.sessions) as s:
        store(s, rt.clock, "demo", {}, BODY, [event("e1"), event("e2", kind="something.new")])
    handlers = {("demo", "invoice.updated"): handle}
    assert process_pending(rt.sessions, rt.clock, handlers) == 2
    assert process_pending(rt.sessions, rt.clock, handlers) == 0
    assert seen == ["e1"]
    with rt.sessions() as s:
        statuses = dict(
            s.execute(select(WebhookEvent.event_id, WebhookEvent.status)).tuples().all()
        )
    assert statuses == {"e1": "processed", "e2": "ignored"}


def test_a_failing_handler_leaves_no_partial_writes_and_retries(rt, company, clock):
    calls = []

    def flaky(session, ev):
        log_activity(session, rt.clock, ev.company_id, "test.partial", "half-done")
        calls.append(1)
        if len(calls) == 1:
            raise Transient("ledger timed out")

    with transaction(rt.sessions) as s:
        store(s, rt.clock, "demo", {}, BODY, [event("e1")])
    handlers = {("demo", "invoice.updated"): flaky}
    process_pending(rt.sessions, rt.clock, handlers)
    assert count(rt, Activity, Activity.kind == "test.partial") == 0
    with rt.sessions() as s:
        ev = s.scalar(select(WebhookEvent))
    assert ev.status == "pending" and ev.attempts == 1 and "timed out" in ev.last_error
    assert process_pending(rt.sessions, rt.clock, handlers) == 0  # backing off
    clock.advance(timedelta(minutes=3))
    process_pending(rt.sessions, rt.clock, handlers)
    assert count(rt, Activity, Activity.kind == "test.partial") == 1
    with rt.sessions() as s:
        assert s.scalar(select(WebhookEvent.status)) == "processed"


def test_a_bug_in_a_handler_marks_the_event_failed_and_keeps_it(rt, company):
    def broken(session, ev):
        raise KeyError("data")

    with transaction(rt.sessions) as s:
        store(s, rt.clock, "demo", {}, BODY, [event("e1")])
    process_pending(rt.sessions, rt.clock, {("demo", "invoice.updated"): broken})
    with rt.sessions() as s:
        ev = s.scalar(select(WebhookEvent))
        conn = ledger_connection(s, company.id)
    assert ev.status == "failed" and "KeyError" in ev.last_error and conn is not None


def test_a_new_delivery_of_one_event_is_one_statement_and_new_bytes_for_a_stored_event_add_none(
    rt, company
):
    postgres = rt.engine.dialect.name == "postgresql"
    with counted(rt) as statements, transaction(rt.sessions) as s:
        first = store(s, rt.clock, "demo", {"Content-Type": "application/json"}, BODY, [event()])
    # PostgreSQL: the delivery, its event and the company it is routed to in one round trip.
    assert len(statements) == (1 if postgres else 3)
    with transaction(rt.sessions) as s:  # the same event again, in other bytes (a resend)
        second = store(s, rt.clock, "demo", {}, BODY + b" ", [event()])
    assert (first.new, first.duplicates, second.new, second.duplicates) == (1, 0, 0, 1)
    assert first.delivery_id != second.delivery_id
    assert count(rt, WebhookEvent) == 1 and count(rt, WebhookDelivery) == 2
    with rt.sessions() as s:
        stored = s.scalar(select(WebhookEvent))
        delivery = s.get(WebhookDelivery, first.delivery_id)
    assert (stored.company_id, stored.delivery_id, stored.status) == (
        company.id,
        first.delivery_id,
        "pending",
    )
    assert stored.payload == {"id": stored.event_id} and stored.received_at == rt.clock.now()
    assert delivery.headers == {"content-type": "application/json"} and delivery.events == 1


def test_an_event_for_no_known_tenant_is_stored_without_a_company(rt, company):
    with transaction(rt.sessions) as s:
        stored = store(s, rt.clock, "demo", {}, BODY, [event(tenant="nobody")])
    assert stored.new == 1
    with rt.sessions() as s:
        assert s.scalar(select(WebhookEvent.company_id)) is None


def test_a_stripe_webhook_after_the_database_closed_the_pooled_connection_is_stored(rt):
    if rt.engine.dialect.name != "postgresql":
        pytest.skip("a server that closes connections: PostgreSQL")
    rt.engine.dispose()
    with rt.engine.connect() as c:  # the one pooled connection, then closed by the server
        pid = c.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    other = make_engine(rt.settings.database_url)
    with other.begin() as c:
        c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    other.dispose()
    sent = deliver(rt, "checkout.session.completed", {"id": "cs_after_restart"})
    with rt.sessions() as s:
        assert s.scalar(select(WebhookEvent.event_id)) == sent["id"]


@contextmanager
def driven(monkeypatch):
    """The statements psycopg sends (SQLAlchemy's own and those run on its connection directly)."""
    statements: list[str] = []
    execute = psycopg.Cursor.execute

    def counting(self, query, *args, **kwargs):
        statements.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    yield statements
    monkeypatch.undo()


def test_a_stripe_delivery_signed_by_the_install_is_one_statement_and_a_resend_is_kept_once(
    rt, monkeypatch
):
    with driven(monkeypatch) as statements:
        sent = deliver(rt, "checkout.session.completed", {"id": "cs_one_statement"})
    # PostgreSQL: the delivery and its event in one statement, outside a transaction (no BEGIN
    # and COMMIT round trips); SQLite: the general way.
    if rt.engine.dialect.name == "postgresql":
        assert len(statements) == 1, statements
        assert _prepared(rt.engine).idle[0][0].connection.dbapi_connection.autocommit
    redeliver(rt, sent)  # the same bytes again: a repeat, counted on the delivery
    with rt.sessions() as s:
        assert s.scalars(select(WebhookEvent.event_id)).all() == [sent["id"]]
        delivery = s.scalar(select(WebhookDelivery))
    assert delivery.repeats == 1 and delivery.events == 1


def postgres_only(rt):
    if rt.engine.dialect.name != "postgresql":
        pytest.skip("the prepared connections serve PostgreSQL only")


def kept(rt):
    """psycopg's connection kept for the one statement, after a delivery."""
    prepared = _prepared(rt.engine)
    assert prepared.held == 1 and len(prepared.idle) == 1
    return prepared.idle[0][0].connection.dbapi_connection


def stored_ids(rt):
    with rt.sessions() as s:
        return set(s.scalars(select(WebhookEvent.event_id)))


def test_a_stripe_delivery_after_the_server_closed_the_kept_connection_is_stored(rt, caplog):
    postgres_only(rt)
    caplog.set_level(logging.INFO, logger="arbridge.webhooks.inbox")
    first = deliver(rt, "checkout.session.completed", {"id": "cs_before"})
    old = kept(rt)
    pid = old.info.backend_pid
    other = make_engine(rt.settings.database_url)
    with other.begin() as c:
        c.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    other.dispose()
    second = deliver(rt, "checkout.session.completed", {"id": "cs_after"})
    assert stored_ids(rt) == {first["id"], second["id"]}
    assert old.closed and "its prepared connection failed" in caplog.text
    third = deliver(rt, "checkout.session.completed", {"id": "cs_then"})  # a new one is kept
    assert third["id"] in stored_ids(rt) and kept(rt) is not old


def test_a_statement_that_fails_on_the_kept_connection_raises_its_error_and_stores_nothing(rt):
    postgres_only(rt)
    deliver(rt, "checkout.session.completed", {"id": "cs_good"})
    old = kept(rt)
    too_long = InboxEvent(event_id="evt_long", event_type="x", tenant_id="t" * 100)
    with pytest.raises(DataError):
        store_alone(rt.engine, rt.clock, "stripe", {}, b'{"id": "evt_long"}', too_long)
    assert old.closed and _prepared(rt.engine).held == 0
    assert "evt_long" not in stored_ids(rt)


def test_kept_connections_are_replaced_when_idle_too_long_and_closed_with_the_engine(
    rt, monkeypatch
):
    postgres_only(rt)
    deliver(rt, "checkout.session.completed", {"id": "cs_one"})
    old = kept(rt)
    monkeypatch.setattr(inbox, "POOL_RECYCLE_SECONDS", -1)  # every idle one is too old
    deliver(rt, "checkout.session.completed", {"id": "cs_two"})
    new = kept(rt)
    assert old.closed and new is not old
    rt.engine.dispose()
    assert new.closed and _prepared(rt.engine).held == 0


def test_with_every_kept_connection_busy_a_delivery_takes_a_pooled_one(rt):
    postgres_only(rt)
    prepared = _prepared(rt.engine)
    busy = [prepared.take() for _ in range(inbox.PREPARED_CONNECTIONS)]
    assert None not in busy and prepared.take() is None
    sent = deliver(rt, "checkout.session.completed", {"id": "cs_pooled"})
    assert sent["id"] in stored_ids(rt)
    for conn in busy:
        prepared.give(conn)
    assert prepared.held == inbox.PREPARED_CONNECTIONS
