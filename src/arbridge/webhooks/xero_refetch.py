"""Xero events brought in by reading the named records again, several at a time.

An event only says which record changed. The worker reads the records its pending events name,
grouped by tenant and entity (invoices and contacts by id in batches whose URL Xero accepts,
credit notes one by one: that list takes no ids filter), and saves them as a sync page would be
saved, without moving the sync cursor. A burst of events costs a handful of calls, not a sync.

The reads happen with no transaction open: on SQLite an open transaction holds the only write
lock, and a token refresh (committed on its own before the new token is used) would wait on it.
The events are then taken again under a row lock, so two workers never apply one event twice;
a record read by both is saved twice with the same values, which changes nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import Clock
from arbridge.connectors.base import Entity, SourceRecord
from arbridge.connectors.xero.endpoints import GUID
from arbridge.errors import ArbridgeError, RateLimited, Transient
from arbridge.sync.db import transaction
from arbridge.sync.model import Connection, WebhookEvent
from arbridge.sync.runner import apply_records
from arbridge.webhooks.dispatch import MAX_ATTEMPTS
from arbridge.webhooks.xero import CATEGORIES

log = logging.getLogger(__name__)

LIMIT = 500  # events taken in one pass


class Reader(Protocol):
    """The reads by id of the Xero connector."""

    def read_invoices(self, source_ids: Sequence[str]) -> list[SourceRecord]: ...

    def read_contacts(self, source_ids: Sequence[str]) -> list[SourceRecord]: ...

    def read_credit_note(self, source_id: str) -> SourceRecord | None: ...


def read(reader: Reader, ids: dict[Entity, list[str]]) -> dict[Entity, list[SourceRecord]]:
    """The named records as Xero has them now; one missing at Xero is simply not there."""
    out: dict[Entity, list[SourceRecord]] = {}
    if ids.get("invoices"):
        out["invoices"] = reader.read_invoices(ids["invoices"])
    if ids.get("customers"):
        out["customers"] = reader.read_contacts(ids["customers"])
    if ids.get("credit_notes"):
        # An id that is no GUID names no Xero record (and Xero would refuse the whole read).
        notes = [reader.read_credit_note(i) for i in ids["credit_notes"] if GUID.match(i)]
        out["credit_notes"] = [n for n in notes if n is not None]
    return out


def refetch_pending(
    factory: sessionmaker[Session],
    clock: Clock,
    reader_for: Callable[[Connection], Reader],
    limit: int = LIMIT,
) -> int:
    """Bring in the records named by due Xero events of active connections; returns how many
    events were handled. Events of other tenants are left to the per-event handler."""
    with transaction(factory) as session:
        rows = session.execute(
            select(
                WebhookEvent.id,
                WebhookEvent.tenant_id,
                WebhookEvent.event_type,
                WebhookEvent.payload,
            )
            .where(
                WebhookEvent.provider == "xero",
                WebhookEvent.status == "pending",
                WebhookEvent.next_attempt_at <= clock.now(),
                WebhookEvent.event_type.in_(list(CATEGORIES)),
            )
            .order_by(WebhookEvent.next_attempt_at, WebhookEvent.id)
            .limit(limit)
        ).all()
        tenants = {r.tenant_id for r in rows}
        conns = {
            c.tenant_id: c
            for c in session.scalars(
                select(Connection).where(
                    Connection.provider == "xero",
                    Connection.status == "active",
                    Connection.tenant_id.in_(tenants),
                )
            )
        }
        for c in conns.values():
            session.expunge(c)
    by_tenant: dict[str, list[tuple[int, Entity, str]]] = defaultdict(list)
    for r in rows:
        if r.tenant_id in conns:
            by_tenant[r.tenant_id].append((r.id, CATEGORIES[r.event_type], str(r.payload["id"])))
    handled = 0
    for tenant, events in by_tenant.items():
        conn = conns[tenant]
        ids: dict[Entity, list[str]] = defaultdict(list)
        for _id, entity, source_id in events:
            if source_id not in ids[entity]:
                ids[entity].append(source_id)
        event_ids = [e[0] for e in events]
        try:
            records = read(reader_for(conn), ids)
        except (Transient, RateLimited, ArbridgeError) as e:
            _failed(factory, clock, event_ids, e)
            continue
        with transaction(factory) as session:
            taken = list(
                session.scalars(
                    select(WebhookEvent)
                    .where(WebhookEvent.id.in_(event_ids), WebhookEvent.status == "pending")
                    .with_for_update(skip_locked=True)
                )
            )
            current = session.get(Connection, conn.id)
            if not taken or current is None or current.status != "active":
                continue
            for entity, found in records.items():
                apply_records(session, current, entity, found, clock)
            for ev in taken:
                ev.attempts += 1
                ev.status, ev.processed_at, ev.last_error = "processed", clock.now(), None
            handled += len(taken)
    return handled


def _failed(
    factory: sessionmaker[Session], clock: Clock, event_ids: list[int], error: ArbridgeError
) -> None:
    """A read that failed: a throttle or a passing fault retries later with backoff, as the
    dispatcher does; anything else (a grant gone, already reported to the owner) fails."""
    retryable = isinstance(error, (Transient, RateLimited))
    log.warning("Xero re-fetch of %s event(s) failed: %s", len(event_ids), error)
    with transaction(factory) as session:
        for ev in session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.id.in_(event_ids), WebhookEvent.status == "pending")
            .with_for_update(skip_locked=True)
        ):
            ev.attempts += 1
            retry = retryable and ev.attempts < MAX_ATTEMPTS
            ev.status = "pending" if retry else "failed"
            ev.next_attempt_at = clock.now() + timedelta(minutes=min(2**ev.attempts, 360))
            ev.last_error = f"{type(error).__name__}: {error}"[:2000]
