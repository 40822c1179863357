"""Ledger connections in the database, for every provider: OAuth tokens encrypted at rest and
refreshed under a row lock, attach/disconnect, the "needs reconnect" path that pauses jobs and
tells the owner, and the ids a full read checks deletions against.

Intuit and Xero both rotate the refresh token on refresh and the old one soon stops working, so
two workers refreshing at once must not both spend it: the refresh happens while this
connection's row is locked (an UPDATE first, which takes the row lock on PostgreSQL and the write
lock on SQLite), the new tokens are committed before anyone uses them, and a worker that waited
for the lock finds the access token already replaced and uses that instead.

A connection holds its own tokens, or points to a grant several connections share (Xero: one
consent, several organisations, each its own company). Shared tokens are refreshed under the
grant's row lock, and a grant the provider refuses marks every connection on it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import Clock
from arbridge.crypto import Keyring
from arbridge.errors import AuthExpired, ConfigError, NotFound
from arbridge.sync.activity import log_activity
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Company,
    CompanyJob,
    Connection,
    CreditNote,
    Customer,
    Invoice,
    OAuthGrant,
    OutboxMessage,
    Payment,
)
from arbridge.sync.notices import tell_owner
from arbridge.sync.outbox_kinds import LEDGER_FEE_WRITES, LEDGER_SENDS, LEDGER_WRITES

log = logging.getLogger(__name__)

EARLY_REFRESH_SECONDS = 120


class Grant(Protocol):
    access_token: str

    def as_credentials(self) -> dict[str, Any]: ...


class OAuthClient(Protocol):
    def refresh(self, refresh_token: str) -> Grant: ...

    def revoke(self, token: str) -> None: ...


def token_holder(session: Session, conn: Connection, *, lock: bool = False) -> Any:
    """Where this connection's tokens are: the grant it shares, or the connection itself."""
    if conn.grant_id is None:
        return conn
    if lock:
        session.execute(
            update(OAuthGrant)
            .where(OAuthGrant.id == conn.grant_id)
            .values(provider=OAuthGrant.provider)
        )
        query = select(OAuthGrant).where(OAuthGrant.id == conn.grant_id).with_for_update()
        grant = session.scalar(query)
    else:
        grant = session.get(OAuthGrant, conn.grant_id)
    return grant if grant is not None else conn


def credentials(keyring: Keyring, holder: Connection | OAuthGrant, label: str) -> dict[str, Any]:
    if not holder.credentials_encrypted:
        raise AuthExpired(f"the {label} connection holds no tokens: reconnect it")
    return json.loads(keyring.decrypt(holder.credentials_encrypted))


def store_grant(
    session: Session, keyring: Keyring, clock: Clock, provider: str, grant: Grant
) -> OAuthGrant:
    """A new grant for several connections to share (attach each with `shared=`)."""
    row = OAuthGrant(
        provider=provider,
        credentials_encrypted=keyring.encrypt(json.dumps(grant.as_credentials())),
        created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    return row


def sharing(session: Session, conn: Connection) -> list[Connection]:
    """The connections on the same tokens as this one (itself included)."""
    if conn.grant_id is None:
        return [conn]
    return list(
        session.scalars(
            select(Connection).where(Connection.grant_id == conn.grant_id).order_by(Connection.id)
        )
    )


def _expires(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class ConnectionTokens:
    """The TokenSource for one connection, over the database."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        keyring: Keyring,
        clock: Clock,
        connection_id: int,
        oauth: OAuthClient,
        *,
        label: str,
        key_prefix: str | None = None,
    ) -> None:
        self.factory = factory
        self.keyring = keyring
        self.clock = clock
        self.connection_id = connection_id
        self.oauth = oauth
        self.label = label
        self.key_prefix = key_prefix

    def _fresh(self, creds: dict[str, Any]) -> bool:
        expires = _expires(creds.get("access_expires_at"))
        return bool(
            creds.get("access_token")
            and expires
            and (expires - self.clock.now()).total_seconds() > EARLY_REFRESH_SECONDS
        )

    def access_token(self) -> str:
        with self.factory() as session:
            conn = session.get(Connection, self.connection_id)
            if conn is None:
                raise NotFound(f"connection {self.connection_id} no longer exists")
            if conn.status != "active":
                raise AuthExpired(f"the {self.label} connection needs to be reconnected")
            creds = credentials(self.keyring, token_holder(session, conn), self.label)
        if self._fresh(creds):
            return str(creds["access_token"])
        return self.refresh(str(creds.get("access_token") or ""))

    def refresh(self, stale: str) -> str:
        try:
            with transaction(self.factory) as session:
                # Lock first (an UPDATE locks on both databases), then read what is stored now.
                session.execute(
                    update(Connection)
                    .where(Connection.id == self.connection_id)
                    .values(status=Connection.status)
                )
                conn = session.scalar(
                    select(Connection).where(Connection.id == self.connection_id).with_for_update()
                )
                if conn is None:
                    raise NotFound(f"connection {self.connection_id} no longer exists")
                holder = token_holder(session, conn, lock=True)
                creds = credentials(self.keyring, holder, self.label)
                if creds.get("access_token") != stale and self._fresh(creds):
                    return str(creds["access_token"])  # another worker refreshed while we waited
                grant = self.oauth.refresh(str(creds["refresh_token"]))
                # Saved (committed when this block ends) before the new token is used anywhere.
                holder.credentials_encrypted = self.keyring.encrypt(
                    json.dumps({**creds, **grant.as_credentials()})
                )
                log.info("refreshed the %s token of connection %s", self.label, self.connection_id)
                return grant.access_token
        except AuthExpired as e:
            self.give_up(str(e))
            raise

    def give_up(self, reason: str) -> None:
        with transaction(self.factory) as session:
            conn = session.get(Connection, self.connection_id)
            for each in sharing(session, conn) if conn is not None else []:
                mark_needs_reconnect(
                    session, self.clock, each, reason, label=self.label, key_prefix=self.key_prefix
                )


def set_sync_paused(session: Session, company_id: int, paused: bool) -> None:
    session.execute(
        update(CompanyJob)
        .where(CompanyJob.company_id == company_id, CompanyJob.job == "sync")
        .values(paused=paused)
    )


def mark_needs_reconnect(
    session: Session,
    clock: Clock,
    conn: Connection,
    reason: str,
    *,
    label: str,
    key_prefix: str | None = None,
) -> None:
    """Mark the connection, pause its sync job, and tell the owner (activity log and email),
    naming the provider by its label."""
    if conn.status == "needs_reconnect":
        return
    conn.status, conn.status_detail = "needs_reconnect", reason[:2000]
    set_sync_paused(session, conn.company_id, True)
    message = (
        f"{label} stopped accepting arbridge's connection, so syncing is paused. "
        f"Open Settings and choose Reconnect to {label}."
    )
    log.warning("%s connection %s needs reconnecting: %s", label, conn.id, reason)
    log_activity(session, clock, conn.company_id, "connection.needs_reconnect", message)
    tell_owner(
        session,
        clock,
        conn.company_id,
        key=f"{key_prefix or conn.provider}:needs-reconnect:{conn.id}:{clock.now().isoformat()}",
        subject=f"Reconnect {label} to keep arbridge up to date",
        text=message,
        mail=None,
    )


def attach(
    session: Session,
    keyring: Keyring,
    clock: Clock,
    company: Company,
    *,
    provider: str,
    label: str,
    tenant_id: str,
    grant: Grant,
    connected_message: str | None = None,
    shared: OAuthGrant | None = None,
) -> Connection:
    """Create or renew the company's connection to a provider with a new grant; resume its jobs
    and queue again the ledger write-backs that failed only because the grant was dead. With
    `shared`, the tokens are that stored grant's (store_grant), not a copy on the connection."""
    conn = session.scalar(
        select(Connection).where(
            Connection.company_id == company.id, Connection.provider == provider
        )
    )
    other = session.scalar(
        select(Connection).where(Connection.provider == provider, Connection.tenant_id == tenant_id)
    )
    if other is not None and other.company_id != company.id:
        raise ConfigError(f"{label} company {tenant_id} is already connected to another company")
    if conn is None:
        conn = Connection(
            company_id=company.id, provider=provider, tenant_id=tenant_id, created_at=clock.now()
        )
        session.add(conn)
        hold_reminders_until_chosen(company)
    elif conn.tenant_id != tenant_id:
        raise ConfigError(
            f"this company is connected to {label} company {conn.tenant_id}, not {tenant_id}; "
            "disconnect it first"
        )
    previous = conn.grant_id
    if shared is not None:
        conn.credentials_encrypted, conn.grant_id = None, shared.id
    else:
        conn.credentials_encrypted = keyring.encrypt(json.dumps(grant.as_credentials()))
        conn.grant_id = None
    conn.status, conn.status_detail = "active", None
    session.flush()
    if previous is not None and previous != conn.grant_id:
        forget_unused_grant(session, previous)
    set_sync_paused(session, company.id, False)
    revived = revive_write_backs(session, clock, company.id)
    if revived:
        log.info("%s reconnected: %s waiting write-back(s) queued again", label, revived)
    log_activity(
        session, clock, company.id, "connection.added", connected_message or f"Connected {label}"
    )
    return conn


def forget_unused_grant(session: Session, grant_id: int) -> None:
    """Delete a shared grant's tokens once no connection uses them any more."""
    used = session.scalar(select(Connection.id).where(Connection.grant_id == grant_id).limit(1))
    if used is None:
        grant = session.get(OAuthGrant, grant_id)
        if grant is not None:
            session.delete(grant)


def hold_reminders_until_chosen(company: Company) -> None:
    """A ledger's first connection brings its old overdue invoices: nothing goes out until the
    owner chooses how reminders start (a company that already chose keeps its choice)."""
    stored = dict(company.settings or {})
    reminders = dict(stored.get("reminders") or {})
    if reminders.get("start") is None:
        reminders["start"] = {"mode": "waiting"}
        stored["reminders"] = reminders
        company.settings = stored  # a new dict, so the JSON column sees the change


def revive_write_backs(session: Session, clock: Clock, company_id: int) -> int:
    """Write-backs (and sends through the ledger) that failed only because the grant was dead go
    out again. Safe: each carries its idempotency key, so one that did reach the ledger returns
    the same record, never a second (and a send reads the invoice first)."""
    return session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.company_id == company_id,
            OutboxMessage.kind.in_(LEDGER_WRITES + LEDGER_FEE_WRITES + LEDGER_SENDS),
            OutboxMessage.status.in_(("failed", "dead")),
            OutboxMessage.last_error.like("AuthExpired:%"),
        )
        .values(status="pending", attempts=0, next_attempt_at=clock.now(), last_error=None)
    ).rowcount


def disconnect(
    session: Session,
    keyring: Keyring,
    clock: Clock,
    conn: Connection,
    oauth: OAuthClient | None,
    *,
    label: str,
) -> None:
    """Revoke the grant at the provider (best effort), forget the tokens, stop the jobs. A grant
    other connections share is never revoked (that would disconnect them too); it is forgotten
    with the last connection on it."""
    if oauth is not None and conn.credentials_encrypted:
        try:
            oauth.revoke(str(credentials(keyring, conn, label)["refresh_token"]))
        except Exception as e:  # the grant may be dead already; disconnecting must still work
            log.warning("revoking %s connection %s failed: %s", label, conn.id, e)
    previous = conn.grant_id
    conn.credentials_encrypted, conn.grant_id = None, None
    session.flush()
    if previous is not None:
        forget_unused_grant(session, previous)
    conn.status, conn.status_detail = "disconnected", "disconnected by the owner"
    set_sync_paused(session, conn.company_id, True)
    log_activity(
        session, clock, conn.company_id, "connection.disconnected", f"Disconnected {label}"
    )


def known_ids(factory: sessionmaker[Session], conn: Connection) -> Callable[[str], set[str]]:
    """The ids of the live records of each entity a connection's ledger gave us: what a full read
    compares with what the ledger still has, to notice deletions it does not report."""
    company_id, source = conn.company_id, conn.provider

    def live_ids(entity: str) -> set[str]:
        model: Any = {
            "customers": Customer,
            "invoices": Invoice,
            "payments": Payment,
            "credit_notes": CreditNote,
        }[entity]
        live = model.deleted.is_(False) if entity == "customers" else model.status != "deleted"
        with factory() as session:
            return set(
                session.scalars(
                    select(model.source_id).where(
                        model.company_id == company_id, model.source == source, live
                    )
                )
            )

    return live_ids
