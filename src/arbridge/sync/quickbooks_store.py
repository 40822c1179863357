"""QuickBooks connections in the database: tokens encrypted at rest and refreshed under a row
lock, attach/disconnect, and the "needs reconnect" path that pauses jobs and tells the owner.

Intuit rotates the refresh token on (almost) every refresh and the old one soon stops working, so
two workers refreshing at once must not both spend it: the refresh happens while this
connection's row is locked (an UPDATE first, which takes the row lock on PostgreSQL and the write
lock on SQLite), the new tokens are committed before anyone uses them, and a worker that waited
for the lock finds the access token already replaced and uses that instead.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import Clock
from arbridge.config import Settings
from arbridge.connectors.quickbooks import (
    Grant,
    IntuitOAuth,
    QuickBooksConfig,
    QuickBooksConnector,
)
from arbridge.crypto import Keyring
from arbridge.errors import AuthExpired, ConfigError, NotFound
from arbridge.sync.activity import log_activity
from arbridge.sync.db import dialect_insert, transaction
from arbridge.sync.model import (
    Company,
    CompanyJob,
    Connection,
    CreditNote,
    Customer,
    Invoice,
    OutboxMessage,
    Payment,
    QuickBooksCall,
    QuickBooksRealm,
)
from arbridge.sync.notices import tell_owner

log = logging.getLogger(__name__)

EARLY_REFRESH_SECONDS = 120
# Outbox kinds that write into the ledger (handlers.py), retried after a reconnect.
LEDGER_WRITES = ("ledger_payment", "ledger_reversal", "ledger_discount")


def quickbooks_config(settings: Settings) -> QuickBooksConfig:
    if not settings.qbo_client_id or not settings.qbo_client_secret:
        raise ConfigError(
            "QuickBooks is not configured: set ARBRIDGE_QBO_CLIENT_ID and ARBRIDGE_QBO_CLIENT_SECRET"
        )
    return QuickBooksConfig(
        client_id=settings.qbo_client_id,
        client_secret=settings.qbo_client_secret,
        redirect_uri=settings.qbo_redirect_uri or f"{settings.base_url}/quickbooks/callback",
        environment=settings.qbo_environment,
        webhook_verifier=settings.qbo_webhook_verifier,
        api_base=settings.qbo_api_base,
        discovery_url=settings.qbo_discovery_url,
    )


def _credentials(keyring: Keyring, conn: Connection) -> dict[str, Any]:
    if not conn.credentials_encrypted:
        raise AuthExpired("the QuickBooks connection holds no tokens: reconnect it")
    return json.loads(keyring.decrypt(conn.credentials_encrypted))


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
        oauth: IntuitOAuth,
    ) -> None:
        self.factory = factory
        self.keyring = keyring
        self.clock = clock
        self.connection_id = connection_id
        self.oauth = oauth

    def access_token(self) -> str:
        with self.factory() as session:
            conn = session.get(Connection, self.connection_id)
            if conn is None:
                raise NotFound(f"connection {self.connection_id} no longer exists")
            if conn.status != "active":
                raise AuthExpired("the QuickBooks connection needs to be reconnected")
            creds = _credentials(self.keyring, conn)
        expires = _expires(creds.get("access_expires_at"))
        if (
            creds.get("access_token")
            and expires
            and ((expires - self.clock.now()).total_seconds() > EARLY_REFRESH_SECONDS)
        ):
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
                creds = _credentials(self.keyring, conn)
                expires = _expires(creds.get("access_expires_at"))
                if (
                    creds.get("access_token")
                    and creds["access_token"] != stale
                    and expires
                    and (expires - self.clock.now()).total_seconds() > EARLY_REFRESH_SECONDS
                ):
                    return str(creds["access_token"])  # another worker refreshed while we waited
                grant = self.oauth.refresh(str(creds["refresh_token"]))
                # Saved (committed when this block ends) before the new token is used anywhere.
                conn.credentials_encrypted = self.keyring.encrypt(
                    json.dumps({**creds, **grant.as_credentials()})
                )
                log.info("refreshed the QuickBooks token of connection %s", self.connection_id)
                return grant.access_token
        except AuthExpired as e:
            self.give_up(str(e))
            raise

    def give_up(self, reason: str) -> None:
        with transaction(self.factory) as session:
            conn = session.get(Connection, self.connection_id)
            if conn is not None:
                mark_needs_reconnect(session, self.clock, conn, reason)


class DatabaseLimiter:
    """Intuit's per-realm limits (500 calls a minute, 10 in flight) across every worker process:
    each call takes a slot row under the realm's row lock and releases it when done. A process
    that dies mid-call frees its slot when the lease (longer than Intuit's 120 s timeout) ends."""

    LEASE = timedelta(seconds=130)
    WINDOW = timedelta(seconds=60)

    def __init__(
        self,
        factory: sessionmaker[Session],
        clock: Clock,
        realm_id: str,
        sleep: Callable[[float], None],
        per_minute: int = 500,
        concurrent: int = 10,
    ) -> None:
        self.factory = factory
        self.clock = clock
        self.realm_id = realm_id
        self.sleep = sleep
        self.per_minute = per_minute
        self.concurrent = concurrent

    def _take(self) -> tuple[int | None, float]:
        with transaction(self.factory) as s:
            s.execute(
                dialect_insert(s)(QuickBooksRealm.__table__)
                .values(realm_id=self.realm_id)
                .on_conflict_do_nothing(index_elements=["realm_id"])
            )
            # The lock: an UPDATE takes the row lock on PostgreSQL and the write lock on SQLite.
            s.execute(
                update(QuickBooksRealm)
                .where(QuickBooksRealm.realm_id == self.realm_id)
                .values(realm_id=self.realm_id)
            )
            now = self.clock.now()
            mine = QuickBooksCall.realm_id == self.realm_id
            s.execute(
                delete(QuickBooksCall).where(
                    mine,
                    QuickBooksCall.started_at <= now - self.WINDOW,
                    (QuickBooksCall.finished_at.is_not(None)) | (QuickBooksCall.lease_until < now),
                )
            )
            recent = s.scalars(
                select(QuickBooksCall.started_at)
                .where(mine, QuickBooksCall.started_at > now - self.WINDOW)
                .order_by(QuickBooksCall.started_at)
            ).all()
            flying = s.scalar(
                select(func.count())
                .select_from(QuickBooksCall)
                .where(mine, QuickBooksCall.finished_at.is_(None), QuickBooksCall.lease_until > now)
            )
            if len(recent) >= self.per_minute:
                return None, (recent[0] + self.WINDOW - now).total_seconds()
            if (flying or 0) >= self.concurrent:
                return None, 0.05
            call = QuickBooksCall(
                realm_id=self.realm_id, started_at=now, lease_until=now + self.LEASE
            )
            s.add(call)
            s.flush()
            return call.id, 0.0

    @contextmanager
    def slot(self) -> Iterator[None]:
        while True:
            call_id, wait = self._take()
            if call_id is not None:
                break
            self.sleep(max(wait, 0.001))
        try:
            yield
        finally:
            with transaction(self.factory) as s:
                s.execute(
                    update(QuickBooksCall)
                    .where(QuickBooksCall.id == call_id)
                    .values(finished_at=self.clock.now())
                )


def _set_jobs_paused(session: Session, company_id: int, paused: bool) -> None:
    session.execute(
        update(CompanyJob)
        .where(CompanyJob.company_id == company_id, CompanyJob.job == "sync")
        .values(paused=paused)
    )


def mark_needs_reconnect(session: Session, clock: Clock, conn: Connection, reason: str) -> None:
    """Mark the connection, pause its sync job, and tell the owner (activity log and email)."""
    if conn.status == "needs_reconnect":
        return
    conn.status, conn.status_detail = "needs_reconnect", reason[:2000]
    _set_jobs_paused(session, conn.company_id, True)
    message = (
        "QuickBooks stopped accepting arbridge's connection, so syncing is paused. "
        "Open Settings and choose Reconnect to QuickBooks."
    )
    log.warning("QuickBooks connection %s needs reconnecting: %s", conn.id, reason)
    log_activity(session, clock, conn.company_id, "connection.needs_reconnect", message)
    tell_owner(
        session,
        clock,
        conn.company_id,
        key=f"qbo:needs-reconnect:{conn.id}:{clock.now().isoformat()}",
        subject="Reconnect QuickBooks to keep arbridge up to date",
        text=message,
        mail=None,
    )


def attach(
    session: Session,
    keyring: Keyring,
    clock: Clock,
    company: Company,
    realm_id: str,
    grant: Grant,
) -> Connection:
    """Create or renew the company's QuickBooks connection with a new grant; resume its jobs."""
    creds = json.dumps(grant.as_credentials())
    conn = session.scalar(
        select(Connection).where(
            Connection.company_id == company.id, Connection.provider == "quickbooks"
        )
    )
    other = session.scalar(
        select(Connection).where(
            Connection.provider == "quickbooks", Connection.tenant_id == realm_id
        )
    )
    if other is not None and other.company_id != company.id:
        raise ConfigError(f"QuickBooks company {realm_id} is already connected to another company")
    if conn is None:
        conn = Connection(
            company_id=company.id,
            provider="quickbooks",
            tenant_id=realm_id,
            created_at=clock.now(),
        )
        session.add(conn)
    elif conn.tenant_id != realm_id:
        raise ConfigError(
            f"this company is connected to QuickBooks company {conn.tenant_id}, not {realm_id}; "
            "disconnect it first"
        )
    conn.credentials_encrypted = keyring.encrypt(creds)
    conn.status, conn.status_detail = "active", None
    session.flush()
    _set_jobs_paused(session, company.id, False)
    # Write-backs that failed only because the grant was dead go out now. Safe: each carries
    # its requestid, so one that did reach QuickBooks returns the same record, never a second.
    revived = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.company_id == company.id,
            OutboxMessage.kind.in_(LEDGER_WRITES),
            OutboxMessage.status.in_(("failed", "dead")),
            OutboxMessage.last_error.like("AuthExpired:%"),
        )
        .values(status="pending", attempts=0, next_attempt_at=clock.now(), last_error=None)
    ).rowcount
    if revived:
        log.info("QuickBooks reconnected: %s waiting write-back(s) queued again", revived)
    log_activity(session, clock, company.id, "connection.added", "Connected QuickBooks Online")
    return conn


def disconnect(
    session: Session, keyring: Keyring, clock: Clock, conn: Connection, oauth: IntuitOAuth | None
) -> None:
    """Revoke the grant at Intuit (best effort), forget the tokens, stop the jobs."""
    if oauth is not None and conn.credentials_encrypted:
        try:
            oauth.revoke(str(_credentials(keyring, conn)["refresh_token"]))
        except Exception as e:  # the grant may be dead already; disconnecting must still work
            log.warning("revoking QuickBooks connection %s failed: %s", conn.id, e)
    conn.credentials_encrypted = None
    conn.status, conn.status_detail = "disconnected", "disconnected by the owner"
    _set_jobs_paused(session, conn.company_id, True)
    log_activity(
        session, clock, conn.company_id, "connection.disconnected", "Disconnected QuickBooks"
    )


def deposit_account(company: Company) -> str | None:
    return ((company.settings or {}).get("quickbooks") or {}).get("deposit_account_id")


def build_connector(
    settings: Settings,
    factory: sessionmaker[Session],
    keyring: Keyring,
    clock: Clock,
    conn: Connection,
    **options: Any,
) -> QuickBooksConnector:
    config = quickbooks_config(settings)
    with factory() as session:
        company = session.get(Company, conn.company_id)
        prefs = ((company.settings or {}).get("quickbooks") or {}) if company else {}
    tokens = ConnectionTokens(factory, keyring, clock, conn.id, IntuitOAuth(config, clock))

    def known_ids(entity: str) -> set[str]:
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
                        model.company_id == conn.company_id, model.source == "quickbooks", live
                    )
                )
            )

    sleep = options.get("sleep", time.sleep)
    options.setdefault("limiter", DatabaseLimiter(factory, clock, conn.tenant_id, sleep))
    return QuickBooksConnector(
        config,
        conn.tenant_id,
        tokens,
        clock,
        deposit_account_id=prefs.get("deposit_account_id"),
        discount_item_id=str(prefs.get("discount_item_id") or "1"),
        known_ids=known_ids,
        **options,
    )
