"""QuickBooks Online as a provider: OAuth at Intuit, the REST connector, its mapper, its webhooks.

Intuit "API call limits and throttles": 500 requests a minute and 10 in flight per realm.
"""

from __future__ import annotations

import logging
from typing import Any

from arbridge.config import Settings
from arbridge.connectors.base import LedgerConnector
from arbridge.connectors.quickbooks import (
    ENTITY_BY_NAME,
    IntuitOAuth,
    QuickBooksConnector,
    TokenSource,
)
from arbridge.errors import ArbridgeError
from arbridge.providers.base import CallLimits, Provider, Services, Webhooks
from arbridge.sync.mappers import quickbooks as quickbooks_mapper
from arbridge.sync.model import Company, Connection
from arbridge.sync.quickbooks_store import (
    ConnectionTokens,
    build_connector,
    quickbooks_config,
    store_deposit_accounts,
    store_deposit_accounts_error,
)
from arbridge.webhooks import quickbooks as quickbooks_webhooks

log = logging.getLogger(__name__)


def connector(services: Services, conn: Connection) -> LedgerConnector:
    return build_connector(
        services.settings, services.sessions, services.keyring, services.clock, conn
    )


def oauth(services: Services) -> IntuitOAuth:
    """Intuit's OAuth client; ConfigError while QuickBooks is not configured."""
    return IntuitOAuth(quickbooks_config(services.settings), services.clock)


def company_info(services: Services, realm_id: str, tokens: TokenSource) -> dict[str, Any]:
    """The realm's name, country, currency and email, read with the given tokens (the OAuth
    callback's new grant, which proves the grant reads the realm it names)."""
    return QuickBooksConnector(
        quickbooks_config(services.settings), realm_id, tokens, services.clock
    ).company_info()


def deposit_accounts(services: Services, conn: Connection) -> list[tuple[str, str]]:
    """(id, name) of the accounts a payment may be deposited to (see refresh_deposit_accounts)."""
    config = quickbooks_config(services.settings)
    tokens = ConnectionTokens(
        services.sessions,
        services.keyring,
        services.clock,
        conn.id,
        IntuitOAuth(config, services.clock),
    )
    return QuickBooksConnector(
        config, conn.tenant_id, tokens, services.clock, sleep=lambda _s: None
    ).deposit_accounts()


def refresh_deposit_accounts(services: Services, company: Company, conn: Connection) -> str | None:
    """Ask QuickBooks for the deposit accounts and keep the answer on the company (the caller
    commits); the settings page reads it back. Returns why QuickBooks could not be asked, or
    None. Run by the owner's "Refresh from QuickBooks" and on connecting, never while a page
    renders."""
    try:
        accounts = deposit_accounts(services, conn)
    except ArbridgeError as e:
        log.warning("could not list QuickBooks deposit accounts for %s: %s", company.slug, e)
        store_deposit_accounts_error(company, str(e))
        return str(e)
    store_deposit_accounts(company, services.clock.now(), accounts)
    return None


def _verifier(settings: Settings) -> str | None:
    return settings.quickbooks.webhook_verifier if settings.quickbooks is not None else None


PROVIDER = Provider(
    name="quickbooks",
    label="QuickBooks",
    connector=connector,
    mapper=quickbooks_mapper.map_record,
    section=lambda settings: settings.quickbooks,
    oauth=oauth,
    webhooks=Webhooks(
        receive=quickbooks_webhooks.receive,
        secret=_verifier,
        handlers={name: quickbooks_webhooks.handle_quickbooks_entity for name in ENTITY_BY_NAME},
    ),
    limits=CallLimits(per_minute=500, concurrent=10),
    long_label="QuickBooks Online",
    web_module="arbridge.web.quickbooks",
    settings_template="providers/quickbooks_settings.html",
)
