"""Never decide or send on a stale or broken ledger: sync first when the last sync is too old."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from arbridge.collections.reminder_policy import (
    reminder_policy,
)
from arbridge.errors import ArbridgeError, Transient
from arbridge.runtime import Runtime
from arbridge.sync.model import Company, Connection
from arbridge.sync.runner import sync_connection
from arbridge.sync.store import (
    ledger_connection,
)

log = logging.getLogger(__name__)


def ensure_fresh(rt: Runtime, company_id: int, max_age_minutes: int) -> tuple[str | None, Any]:
    """Sync now if the last sync is older than allowed; returns (why sends must wait, sync time)."""
    with rt.sessions() as session:
        conn = ledger_connection(session, company_id)
        if conn is not None:
            session.expunge(conn)
    if conn is None:
        return "no ledger is connected", None
    if conn.status != "active":
        return f"the ledger connection needs attention ({conn.status.replace('_', ' ')})", None
    if synced_recently(conn, rt.clock.now(), max_age_minutes):
        return None, conn.last_sync_at
    try:
        sync_connection(rt.sessions, conn.id, rt.connector_for(conn), rt.clock)
    except ArbridgeError as e:
        return f"the ledger could not be synced ({e})", None
    with rt.sessions() as session:
        fresh = session.get(Connection, conn.id)
        return (None, fresh.last_sync_at) if fresh else ("the connection is gone", None)


def synced_recently(conn: Connection, now: datetime, max_age_minutes: int) -> bool:
    """Is this ledger connection working, and its last sync no older than allowed?"""
    return (
        conn.status == "active"
        and conn.last_sync_at is not None
        and conn.last_sync_at >= now - timedelta(minutes=max_age_minutes)
    )


def hold_unless_fresh(rt: Runtime, company_id: int) -> None:
    """Before an email goes out: make sure its facts come from a recent sync. A stale or broken
    ledger holds it (Transient: retried with backoff until the ledger syncs again), never drops it."""
    with rt.sessions() as session:
        company = session.get(Company, company_id)
        assert company is not None
        policy = reminder_policy(company.settings)
    hold, _synced = ensure_fresh(rt, company_id, policy.max_sync_age_minutes)
    if hold:
        raise Transient(f"held: {hold}")
