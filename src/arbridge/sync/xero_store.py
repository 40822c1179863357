"""Xero connections in the database: the provider-neutral machinery (sync/connections.py,
sync/call_limits.py) bound to Xero's names, label and limits, and the connector built over them.

Xero "API rate limits": per tenant 60 calls a minute, 5 in flight and 5,000 a day.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import Clock
from arbridge.config import Settings
from arbridge.connectors.xero import Grant, XeroConfig, XeroConnector, XeroIdentity
from arbridge.connectors.xero.sdk import Remaining
from arbridge.crypto import Keyring
from arbridge.errors import ConfigError
from arbridge.sync import connections
from arbridge.sync.call_limits import CallLimiter
from arbridge.sync.model import Company, Connection, OAuthGrant

PROVIDER = "xero"
LABEL = "Xero"
PER_MINUTE = 60
CONCURRENT = 5
DAILY = 5000


def xero_config(settings: Settings) -> XeroConfig:
    xero = settings.xero
    if xero is None:
        raise ConfigError(
            "Xero is not configured: set ARBRIDGE_XERO_CLIENT_ID and ARBRIDGE_XERO_CLIENT_SECRET"
        )
    return XeroConfig(
        client_id=xero.client_id,
        client_secret=xero.client_secret,
        redirect_uri=xero.redirect_uri or f"{settings.base_url}/xero/callback",
        webhook_key=xero.webhook_key,
        api_base=xero.api_base,
        identity_base=xero.identity_base,
        page_size=xero.page_size,
    )


class ConnectionTokens(connections.ConnectionTokens):
    """The TokenSource of one Xero connection: each refresh's new refresh token is saved under
    the connection's row lock before it is used (sync/connections.py)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        keyring: Keyring,
        clock: Clock,
        connection_id: int,
        identity: XeroIdentity,
    ) -> None:
        super().__init__(factory, keyring, clock, connection_id, identity, label=LABEL)


def limiter(
    factory: sessionmaker[Session], clock: Clock, tenant_id: str, sleep: Any
) -> CallLimiter:
    """Xero's per-tenant budget across every worker process; a slot's lease outlives the
    connector's 60 s read timeout."""
    return CallLimiter(
        factory,
        clock,
        PROVIDER,
        tenant_id,
        sleep,
        per_minute=PER_MINUTE,
        concurrent=CONCURRENT,
        daily=DAILY,
    )


def attach(
    session: Session,
    keyring: Keyring,
    clock: Clock,
    company: Company,
    tenant_id: str,
    grant: Grant,
    shared: OAuthGrant | None = None,
) -> Connection:
    """Create or renew the company's Xero connection with a new grant; resume its jobs. A tenant
    attached to another company is refused (ConfigError). With `shared` (connections.store_grant),
    every company made from one consent refreshes that one stored grant."""
    return connections.attach(
        session,
        keyring,
        clock,
        company,
        provider=PROVIDER,
        label=LABEL,
        tenant_id=tenant_id,
        grant=grant,
        connected_message="Connected Xero",
        shared=shared,
    )


def tenant_owner(session: Session, tenant_id: str) -> int | None:
    """The id of the company a Xero organisation is attached to, if any."""
    return session.scalar(
        select(Connection.company_id).where(
            Connection.provider == PROVIDER, Connection.tenant_id == tenant_id
        )
    )


def tenant_owners(session: Session, tenant_ids: list[str]) -> dict[str, int]:
    """The company each of these Xero organisations is attached to (those attached)."""
    if not tenant_ids:
        return {}
    rows = session.execute(
        select(Connection.tenant_id, Connection.company_id).where(
            Connection.provider == PROVIDER, Connection.tenant_id.in_(tenant_ids)
        )
    )
    return {tenant_id: company_id for tenant_id, company_id in rows}


def xero_prefs(company: Company | None) -> dict[str, Any]:
    return dict(((company.settings or {}).get("xero") or {}) if company is not None else {})


def store_xero_prefs(company: Company, **values: Any) -> None:
    stored = dict(company.settings or {})
    stored["xero"] = {**(stored.get("xero") or {}), **values}
    company.settings = stored  # a new dict, so the JSON column sees the change


def sync_deferral(factory: sessionmaker[Session], clock: Clock, conn: Connection) -> float | None:
    """Seconds a scheduled sync waits while little of the tenant's daily allowance is left, so
    webhook re-fetches and write-backs keep it; None when it may run."""
    return limiter(factory, clock, conn.tenant_id, time.sleep).day_reserve_low()


def build_connector(
    settings: Settings,
    factory: sessionmaker[Session],
    keyring: Keyring,
    clock: Clock,
    conn: Connection,
    **options: Any,
) -> XeroConnector:
    config = xero_config(settings)
    with factory() as session:
        company = session.get(Company, conn.company_id)
        prefs = xero_prefs(company)
        fees = ((company.settings or {}).get("late_fees") or {}) if company else {}
    sleep = options.setdefault("sleep", time.sleep)
    identity = XeroIdentity(config, clock, sleep=sleep)
    tokens = ConnectionTokens(factory, keyring, clock, conn.id, identity)
    shared = options.setdefault("limiter", limiter(factory, clock, conn.tenant_id, sleep))
    if isinstance(shared, CallLimiter):
        # What Xero says is left of today's allowance is the truth (other apps spend it too).
        def observe(remaining: Remaining) -> None:
            if remaining.day is not None:
                shared.observe_day_remaining(remaining.day)

        options.setdefault("on_limits", observe)
    account = prefs.get("payment_account_id")
    return XeroConnector(
        config,
        conn.tenant_id,
        tokens,
        clock,
        payment_account={"AccountID": str(account)} if account else None,
        discount_account_code=prefs.get("discount_account_code"),
        late_fee_account_code=str(fees.get("xero_account_code") or "") or None,
        **options,
    )


@dataclass(frozen=True)
class PaymentAccounts:
    """The accounts Xero last listed for collected payments, as kept on the company, so the
    settings page shows them without calling Xero while it renders."""

    accounts: list[tuple[str, str]]  # (AccountID, name)
    chosen: str | None
    listed_at: datetime | None  # None: never asked yet
    error: str | None  # why the last ask failed, when it did (the list is the one before)


def stored_payment_accounts(company: Company) -> PaymentAccounts:
    prefs = xero_prefs(company)
    at = prefs.get("payment_accounts_listed_at")
    return PaymentAccounts(
        accounts=[(str(i), str(name)) for i, name in prefs.get("payment_accounts") or []],
        chosen=prefs.get("payment_account_id"),
        listed_at=datetime.fromisoformat(at) if at else None,
        error=prefs.get("payment_accounts_error"),
    )


def store_payment_accounts(
    company: Company, listed_at: datetime, accounts: list[tuple[str, str]]
) -> None:
    store_xero_prefs(
        company,
        payment_accounts=[[i, name] for i, name in accounts],
        payment_accounts_listed_at=listed_at.isoformat(),
        payment_accounts_error=None,
    )


def store_payment_accounts_error(company: Company, error: str) -> None:
    store_xero_prefs(company, payment_accounts_error=error[:500])
