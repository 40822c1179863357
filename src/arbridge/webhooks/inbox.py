"""Store each verified delivery, and each event in it once, before acknowledging.

The provider-specific route verifies the signature over the raw body and parses the payload into
`InboxEvent`s; `store` writes the delivery and its events in one transaction. A duplicate event
(same provider and event id) meets the unique constraint and is skipped, so a provider's retry or a
concurrent duplicate delivery never queues the same work twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection as DbConnection
from sqlalchemy import Engine, select, update
from sqlalchemy import event as db_event
from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.sync.db import POOL_RECYCLE_SECONDS, dialect_insert
from arbridge.sync.model import Connection, WebhookDelivery, WebhookEvent

log = logging.getLogger(__name__)

# Headers worth keeping for an audit; never authorization or cookies.
KEPT_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "stripe-signature",
        "intuit-signature",
        "x-xero-signature",
        "x-twilio-signature",
        "intuit-t-id",
        "x-request-id",
    }
)


@dataclass(frozen=True)
class InboxEvent:
    event_id: str
    event_type: str
    tenant_id: str | None
    payload: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    # The company, when the verification already knows it (a Twilio account of the business's
    # own); otherwise it comes from the connection whose tenant the event names.
    company_id: int | None = None


@dataclass(frozen=True)
class Stored:
    delivery_id: int
    new: int
    duplicates: int
    event_ids: tuple[int, ...] = ()  # the rows of the new events, for handling them at once


def _delivery(
    session: Session,
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    events: int,
    now: datetime,
) -> int:
    """The delivery's row: written once per provider and body; a replay only counts a repeat."""
    digest = hashlib.sha256(body).hexdigest()
    inserted = session.execute(
        dialect_insert(session)(WebhookDelivery.__table__)
        .values(
            provider=provider,
            received_at=now,
            last_received_at=now,
            body=body.decode("utf-8", "replace"),
            body_sha256=digest,
            headers={k.lower(): v for k, v in headers.items() if k.lower() in KEPT_HEADERS},
            events=events,
            repeats=0,
        )
        .on_conflict_do_nothing(index_elements=["provider", "body_sha256"])
        .returning(WebhookDelivery.__table__.c.id)
    ).scalar()
    if inserted is not None:
        return int(inserted)
    repeated = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.provider == provider, WebhookDelivery.body_sha256 == digest)
        .values(repeats=WebhookDelivery.repeats + 1, last_received_at=now)
        .returning(WebhookDelivery.id)
    ).scalar_one()
    log.info("%s delivery %s received again; its body is kept once", provider, repeated)
    return int(repeated)


# PostgreSQL: a new delivery and its one event in a single statement (two data-modifying CTEs),
# yielding (delivery id, the event's row id or NULL when the event was stored before), or no row
# when the delivery is a repeat (same body). The event's company is the connection's whose tenant
# it names, else the one the verification knew (`InboxEvent.company_id`). Written in psycopg's
# own placeholders and run as it is (`exec_driver_sql`): SQLAlchemy cannot cache a statement with
# ON CONFLICT (it compiled the insert again on every delivery, issue 14), and even a cached one
# costs a compiled-statement lookup and type processing per delivery. JSON goes in as the text
# SQLAlchemy's JSON type would have written (json.dumps).
_BY_TENANT = (
    " COALESCE((SELECT company_id FROM connections"
    " WHERE provider = CAST(%(provider)s AS VARCHAR)"
    " AND tenant_id = CAST(%(tenant_id)s AS VARCHAR)), CAST(%(company_id)s AS INTEGER)),"
)
_HEAD = (
    "WITH delivery AS ("
    " INSERT INTO webhook_deliveries"
    " (provider, received_at, last_received_at, body, body_sha256, headers, events, repeats)"
    " VALUES (CAST(%(provider)s AS VARCHAR), %(now)s, %(now)s, %(body)s, %(body_sha256)s,"
    " CAST(%(headers)s AS JSON), 1, 0)"
    " ON CONFLICT (provider, body_sha256) DO NOTHING RETURNING id"
    "), event AS ("
    " INSERT INTO webhook_events"
    " (provider, event_id, event_type, tenant_id, company_id, delivery_id, payload,"
    " occurred_at, received_at, status, attempts, next_attempt_at)"
    # One type for each parameter wherever it appears: a string parameter is varchar.
    " SELECT CAST(%(provider)s AS VARCHAR), CAST(%(event_id)s AS VARCHAR),"
    " CAST(%(event_type)s AS VARCHAR), CAST(%(tenant_id)s AS VARCHAR),"
)
_TAIL = (
    " delivery.id, CAST(%(payload)s AS JSON), %(occurred_at)s, %(now)s, 'pending', 0,"
    " %(now)s FROM delivery"
    " ON CONFLICT (provider, event_id) DO NOTHING RETURNING id"
    ")"
    " SELECT delivery.id, (SELECT id FROM event) FROM delivery"
)


ONE_STATEMENT = _HEAD + _BY_TENANT + _TAIL
# An event that names no tenant has no connection to look up: the same without the lookup (the
# install's own Stripe deliveries; prepared, 160 -> 130 us of PostgreSQL's CPU a statement).
UNTENANTED_STATEMENT = _HEAD + " CAST(%(company_id)s AS INTEGER)," + _TAIL


def _statement(e: InboxEvent) -> str:
    return ONE_STATEMENT if e.tenant_id else UNTENANTED_STATEMENT


def _one_statement_params(
    provider: str, headers: Mapping[str, str], body: bytes, e: InboxEvent, now: datetime
) -> dict[str, Any]:
    return {
        "provider": provider,
        "now": now,
        "body": body.decode("utf-8", "replace"),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "headers": json.dumps(
            {k.lower(): v for k, v in headers.items() if k.lower() in KEPT_HEADERS}
        ),
        "event_id": e.event_id,
        "event_type": e.event_type,
        "tenant_id": e.tenant_id,
        "payload": json.dumps(dict(e.payload)),
        "occurred_at": e.occurred_at,
        "company_id": e.company_id,
    }


def _answer(provider: str, event_id: str, row: Any) -> Stored | None:
    """What the one statement's row says (None: a repeated body, which takes the general way)."""
    if row is None:
        return None
    if row[1] is None:
        log.info("%s event %s already stored; duplicate delivery skipped", provider, event_id)
        return Stored(int(row[0]), 0, 1)
    return Stored(int(row[0]), 1, 0, (int(row[1]),))


def _store_one(
    conn: DbConnection,
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    e: InboxEvent,
    now: datetime,
) -> Stored | None:
    """A new delivery of one event in one round trip (PostgreSQL; None: a repeated body, which
    takes the general way)."""
    # Not prepared: psycopg deallocates every statement it prepared on a connection when that
    # connection next rolls back (the pool's reset after any read-only session), so a worker that
    # also serves pages would pay a DEALLOCATE and a new PREPARE round trip for it.
    params = _one_statement_params(provider, headers, body, e, now)
    return _answer(provider, e.event_id, conn.exec_driver_sql(_statement(e), params).first())


_AUTOCOMMIT: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def _autocommit(engine: Engine) -> Engine:
    """The engine's autocommit twin (same pool), made once: making it costs more than a
    delivery's statement."""
    found = _AUTOCOMMIT.get(engine)
    if found is None:
        found = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return found


# At most this many connections per engine (so per process) kept for the one statement: the
# pool's other connections (5, and 10 more under load) stay free for pages and the worker.
PREPARED_CONNECTIONS = 4


class PreparedConnections:
    """A few pooled connections that run nothing but the one statement, in autocommit, kept
    out of the pool between deliveries (issue 14).

    Each keeps the statement prepared, which halves what PostgreSQL spends on a delivery (its
    planning was half of it), and a delivery skips the pool's checkout and return (setting and
    resetting autocommit). psycopg deallocates what it prepared at a rollback, which these never
    do. A connection idle longer than POOL_RECYCLE_SECONDS is replaced, before a server or proxy
    closes it; one whose statement failed is closed; all are closed when the engine is disposed.
    When all are in use the delivery takes a pooled connection, as before."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.idle: list[tuple[DbConnection, float]] = []
        self.held = 0
        db_event.listen(engine, "engine_disposed", lambda _engine: self.close())

    def take(self) -> DbConnection | None:
        now, stale = time.monotonic(), []
        with self.lock:
            while self.idle:
                conn, used = self.idle.pop()
                if now - used <= POOL_RECYCLE_SECONDS:
                    break
                stale.append(conn)
                self.held -= 1
            else:
                conn = None
                if self.held >= PREPARED_CONNECTIONS:
                    return None
                self.held += 1
        for old in stale:
            _close(old)
        if conn is None:
            try:
                conn = _autocommit(self.engine).connect()
            except BaseException:
                with self.lock:
                    self.held -= 1
                raise
            conn.connection.dbapi_connection.prepare_threshold = 0  # type: ignore[union-attr]
        return conn

    def give(self, conn: DbConnection) -> None:
        with self.lock:
            self.idle.append((conn, time.monotonic()))

    def drop(self, conn: DbConnection) -> None:
        with self.lock:
            self.held -= 1
        _close(conn)

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
            self.held -= len(idle)
        for conn, _used in idle:
            _close(conn)


def _close(conn: DbConnection) -> None:
    conn.invalidate()  # closed, never back in the pool with its prepared statement
    conn.close()


_PREPARED: weakref.WeakKeyDictionary[Engine, PreparedConnections] = weakref.WeakKeyDictionary()
_PREPARED_LOCK = threading.Lock()


def _prepared(engine: Engine) -> PreparedConnections:
    with _PREPARED_LOCK:
        found = _PREPARED.get(engine)
        if found is None:
            found = _PREPARED[engine] = PreparedConnections(engine)
        return found


def store_alone(
    engine: Engine,
    clock: Clock,
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    event: InboxEvent,
) -> Stored | None:
    """A new delivery of one event stored by one statement, atomic by itself, in autocommit:
    one round trip in all (PostgreSQL), no session, on a connection that keeps it prepared when
    one is free (`PreparedConnections`). None: not done (SQLite, or a repeated body): `store`
    it in a transaction."""
    if engine.dialect.name != "postgresql":
        return None
    params = _one_statement_params(provider, headers, body, event, clock.now())
    prepared = _prepared(engine)
    conn = prepared.take()
    if conn is not None:
        try:
            # On psycopg's connection itself: SQLAlchemy's execution and result set-up cost a
            # third of a delivery's CPU here (in process, 530 -> 380 us a delivery).
            raw = conn.connection.dbapi_connection
            row = raw.execute(_statement(event), params).fetchone()  # type: ignore[union-attr]
        except Exception as e:  # tried once more below, where its error is raised
            prepared.drop(conn)
            log.info("%s delivery: its prepared connection failed (%s)", provider, type(e).__name__)
        else:
            prepared.give(conn)
            return _answer(provider, event.event_id, row)
    with _autocommit(engine).connect() as pooled:
        return _answer(
            provider, event.event_id, pooled.exec_driver_sql(_statement(event), params).first()
        )


def store(
    session: Session,
    clock: Clock,
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    events: Sequence[InboxEvent],
) -> Stored:
    now = clock.now()
    if len(events) == 1 and session.get_bind().dialect.name == "postgresql":
        one = _store_one(session.connection(), provider, headers, body, events[0], now)
        if one is not None:
            return one
    delivery_id = _delivery(session, provider, headers, body, len(events), now)
    tenants = {e.tenant_id for e in events if e.tenant_id}
    companies = (
        dict(
            session.execute(
                select(Connection.tenant_id, Connection.company_id).where(
                    Connection.provider == provider, Connection.tenant_id.in_(tenants)
                )
            )
            .tuples()
            .all()
        )
        if tenants
        else {}
    )
    new: list[int] = []
    for e in events:
        stmt = (
            dialect_insert(session)(WebhookEvent.__table__)
            .values(
                provider=provider,
                event_id=e.event_id,
                event_type=e.event_type,
                tenant_id=e.tenant_id,
                company_id=companies.get(e.tenant_id or "", e.company_id),
                delivery_id=delivery_id,
                payload=dict(e.payload),
                occurred_at=e.occurred_at,
                received_at=now,
                status="pending",
                attempts=0,
                next_attempt_at=now,
            )
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(WebhookEvent.__table__.c.id)
        )
        row = session.execute(stmt).scalar()
        if row is not None:
            new.append(int(row))
        else:
            log.info("%s event %s already stored; duplicate delivery skipped", provider, e.event_id)
    return Stored(delivery_id, len(new), len(events) - len(new), tuple(new))
