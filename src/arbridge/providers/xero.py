"""Xero as a provider: OAuth at Xero's identity server, the accounting connector over
xero-python, its mapper, its webhooks.

Xero "API rate limits": per tenant 60 calls a minute, 5 in flight, 5,000 a day.
"""

from __future__ import annotations

import logging

from arbridge.config import Settings
from arbridge.connectors.base import LedgerConnector
from arbridge.connectors.xero import (
    Grant,
    Tenant,
    TenantLimiter,
    TokenSource,
    XeroConnector,
    XeroIdentity,
)
from arbridge.errors import ArbridgeError, AuthExpired, Rejected
from arbridge.providers.base import CallLimits, Provider, Services, Webhooks
from arbridge.sync.mappers import xero as xero_mapper
from arbridge.sync.model import Company, Connection
from arbridge.sync.xero_store import (
    CONCURRENT,
    DAILY,
    PER_MINUTE,
    build_connector,
    store_payment_accounts,
    store_payment_accounts_error,
    sync_deferral,
    xero_config,
)
from arbridge.webhooks import xero as xero_webhooks
from arbridge.webhooks.xero_refetch import refetch_pending

log = logging.getLogger(__name__)


def connector(services: Services, conn: Connection) -> LedgerConnector:
    return build_connector(
        services.settings, services.sessions, services.keyring, services.clock, conn
    )


def oauth(services: Services) -> XeroIdentity:
    """Xero's OAuth client; ConfigError while Xero is not configured."""
    return XeroIdentity(xero_config(services.settings), services.clock)


def organisation(services: Services, tenant_id: str, tokens: TokenSource) -> dict[str, str | None]:
    """The tenant's name, country, currency and timezone, read with the given tokens: a grant
    that answers this reads the tenant it names."""
    return XeroConnector(
        xero_config(services.settings),
        tenant_id,
        tokens,
        services.clock,
        limiter=TenantLimiter(PER_MINUTE, CONCURRENT),
        sleep=lambda _s: None,
    ).organisation()


class HeldGrant:
    """A new grant's access token, held in memory until the grant has proven it reads the
    tenant and is attached: no refresh (that would spend the rotating refresh token outside the
    row lock), and a refusal is simply the proof failing."""

    def __init__(self, grant: Grant) -> None:
        self.grant = grant

    def access_token(self) -> str:
        return self.grant.access_token

    def refresh(self, stale: str) -> str:
        raise AuthExpired("Xero refused the new grant's access token")

    def give_up(self, reason: str) -> None:
        pass  # nothing is attached yet: nothing to mark


def prove_tenant(services: Services, grant: Grant, tenant_id: str) -> Tenant:
    """The tenant, once the grant has shown it reads it: GET /connections must list it and the
    Organisation read must succeed. Rejected (one sentence) otherwise."""
    identity = oauth(services)
    tenants = identity.connections(grant.access_token)
    found = next((t for t in tenants if t.tenant_id == tenant_id), None)
    if found is None:
        names = ", ".join(f"{t.name or '?'} ({t.tenant_id})" for t in tenants) or "none"
        raise Rejected(
            f"this Xero grant does not cover organisation {tenant_id}; it covers: {names}"
        )
    organisation(services, tenant_id, HeldGrant(grant))
    return found


def prove_tenants(
    services: Services, grant: Grant, tenant_ids: list[str]
) -> list[tuple[Tenant, dict[str, str | None]]]:
    """prove_tenant for several organisations of one grant, listing its connections once: each
    with what its Organisation says (name, country, currency, timezone)."""
    tenants = {t.tenant_id: t for t in oauth(services).connections(grant.access_token)}
    proven = []
    for tenant_id in tenant_ids:
        if tenant_id not in tenants:
            raise Rejected(f"this Xero grant does not cover organisation {tenant_id}")
        proven.append((tenants[tenant_id], organisation(services, tenant_id, HeldGrant(grant))))
    return proven


def refresh_payment_accounts(services: Services, company: Company, conn: Connection) -> str | None:
    """Ask Xero for the bank accounts and keep the answer on the company (the caller commits);
    the settings page reads it back. Returns why Xero could not be asked, or None. Run by the
    owner's "Refresh from Xero" and on connecting, never while a page renders."""
    try:
        accounts = build_connector(
            services.settings,
            services.sessions,
            services.keyring,
            services.clock,
            conn,
            sleep=lambda _s: None,
        ).payment_accounts()
    except ArbridgeError as e:
        log.warning("could not list Xero bank accounts for %s: %s", company.slug, e)
        store_payment_accounts_error(company, str(e))
        return str(e)
    store_payment_accounts(company, services.clock.now(), accounts)
    return None


def refetch(services: Services) -> int:
    """Read again the records that due Xero events name, several to a call."""
    return refetch_pending(
        services.sessions,
        services.clock,
        lambda conn: build_connector(
            services.settings, services.sessions, services.keyring, services.clock, conn
        ),
    )


def _webhook_key(settings: Settings) -> str | None:
    return settings.xero.webhook_key if settings.xero is not None else None


PROVIDER = Provider(
    name="xero",
    label="Xero",
    connector=connector,
    mapper=xero_mapper.map_record,
    section=lambda settings: settings.xero,
    oauth=oauth,
    webhooks=Webhooks(
        receive=xero_webhooks.receive,
        secret=_webhook_key,
        handlers={
            category: xero_webhooks.handle_xero_event for category in xero_webhooks.CATEGORIES
        },
        refetch=refetch,
    ),
    limits=CallLimits(per_minute=PER_MINUTE, concurrent=CONCURRENT, daily=DAILY),
    web_module="arbridge.web.xero",
    settings_template="providers/xero_settings.html",
    sync_deferral=lambda services, conn: sync_deferral(services.sessions, services.clock, conn),
)
