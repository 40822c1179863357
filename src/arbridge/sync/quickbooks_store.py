"""QuickBooks connections in the database: the provider-neutral machinery (sync/connections.py,
sync/call_limits.py) bound to QuickBooks' names, label and limits, and the connector built over
them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
from arbridge.errors import ConfigError
from arbridge.sync import connections
from arbridge.sync.call_limits import CallLimiter
from arbridge.sync.model import Company, Connection

PROVIDER = "quickbooks"
LABEL = "QuickBooks"
KEY_PREFIX = "qbo"  # of the owner's needs-reconnect email's outbox key
# Intuit "API call limits and throttles": per realm.
PER_MINUTE = 500
CONCURRENT = 10


def quickbooks_config(settings: Settings) -> QuickBooksConfig:
    qbo = settings.quickbooks
    if qbo is None:
        raise ConfigError(
            "QuickBooks is not configured: set ARBRIDGE_QBO_CLIENT_ID and ARBRIDGE_QBO_CLIENT_SECRET"
        )
    return QuickBooksConfig(
        client_id=qbo.client_id,
        client_secret=qbo.client_secret,
        redirect_uri=qbo.redirect_uri or f"{settings.base_url}/quickbooks/callback",
        environment=qbo.environment,
        webhook_verifier=qbo.webhook_verifier,
        api_base=qbo.api_base,
        discovery_url=qbo.discovery_url,
    )


class ConnectionTokens(connections.ConnectionTokens):
    """The TokenSource of one QuickBooks connection (see sync/connections.py)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        keyring: Keyring,
        clock: Clock,
        connection_id: int,
        oauth: IntuitOAuth,
    ) -> None:
        super().__init__(
            factory, keyring, clock, connection_id, oauth, label=LABEL, key_prefix=KEY_PREFIX
        )


class DatabaseLimiter(CallLimiter):
    """Intuit's per-realm limits (500 calls a minute, 10 in flight) across every worker process;
    a slot's lease outlives Intuit's 120 s request timeout."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        clock: Clock,
        realm_id: str,
        sleep: Callable[[float], None],
        per_minute: int = PER_MINUTE,
        concurrent: int = CONCURRENT,
    ) -> None:
        super().__init__(
            factory,
            clock,
            PROVIDER,
            realm_id,
            sleep,
            per_minute=per_minute,
            concurrent=concurrent,
        )


def mark_needs_reconnect(session: Session, clock: Clock, conn: Connection, reason: str) -> None:
    """Mark the connection, pause its sync job, and tell the owner (activity log and email)."""
    connections.mark_needs_reconnect(
        session, clock, conn, reason, label=LABEL, key_prefix=KEY_PREFIX
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
    return connections.attach(
        session,
        keyring,
        clock,
        company,
        provider=PROVIDER,
        label=LABEL,
        tenant_id=realm_id,
        grant=grant,
        connected_message="Connected QuickBooks Online",
    )


def disconnect(
    session: Session, keyring: Keyring, clock: Clock, conn: Connection, oauth: IntuitOAuth | None
) -> None:
    """Revoke the grant at Intuit (best effort), forget the tokens, stop the jobs."""
    connections.disconnect(session, keyring, clock, conn, oauth, label=LABEL)


def deposit_account(company: Company) -> str | None:
    return ((company.settings or {}).get("quickbooks") or {}).get("deposit_account_id")


@dataclass(frozen=True)
class DepositAccounts:
    """The accounts QuickBooks last listed for a payment to go to, as kept on the company, so
    the settings page shows them without calling QuickBooks while it renders."""

    accounts: list[tuple[str, str]]  # (id, name)
    listed_at: datetime | None  # when QuickBooks listed them; None: never asked yet
    error: str | None  # why the last ask failed, when it did (the list is the one before)


def stored_deposit_accounts(company: Company) -> DepositAccounts:
    prefs = (company.settings or {}).get("quickbooks") or {}
    at = prefs.get("deposit_accounts_listed_at")
    return DepositAccounts(
        accounts=[(str(i), str(name)) for i, name in prefs.get("deposit_accounts") or []],
        listed_at=datetime.fromisoformat(at) if at else None,
        error=prefs.get("deposit_accounts_error"),
    )


def store_deposit_accounts(
    company: Company, listed_at: datetime, accounts: list[tuple[str, str]]
) -> None:
    _store_quickbooks_prefs(
        company,
        deposit_accounts=[[i, name] for i, name in accounts],
        deposit_accounts_listed_at=listed_at.isoformat(),
        deposit_accounts_error=None,
    )


def store_deposit_accounts_error(company: Company, error: str) -> None:
    """QuickBooks could not be asked: keep the list from before, and say why."""
    _store_quickbooks_prefs(company, deposit_accounts_error=error[:500])


def _store_quickbooks_prefs(company: Company, **values: Any) -> None:
    stored = dict(company.settings or {})
    stored["quickbooks"] = {**(stored.get("quickbooks") or {}), **values}
    company.settings = stored  # a new dict, so the JSON column sees the change


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
        fees = ((company.settings or {}).get("late_fees") or {}) if company else {}
    tokens = ConnectionTokens(factory, keyring, clock, conn.id, IntuitOAuth(config, clock))
    sleep = options.get("sleep", time.sleep)
    options.setdefault("limiter", DatabaseLimiter(factory, clock, conn.tenant_id, sleep))
    return QuickBooksConnector(
        config,
        conn.tenant_id,
        tokens,
        clock,
        deposit_account_id=prefs.get("deposit_account_id"),
        discount_item_id=str(prefs.get("discount_item_id") or "1"),
        late_fee_item_id=str(fees.get("quickbooks_item_id") or "") or None,
        known_ids=connections.known_ids(factory, conn),
        **options,
    )
