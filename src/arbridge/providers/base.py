"""What a ledger provider is, and the registry the rest of arbridge asks about providers.

One `Provider` entry says everything provider-specific: its name and label, how a connector for
one of its connections is built, the mapper that turns its records into the receivables model,
its OAuth flow, its webhooks, its settings section, its call limits and its pages (named by
module path and template, so this layer never imports Flask). The runtime, the runner,
the webhook dispatch, the web views and the CLI look a provider up here instead of naming it, so
a new ledger is its own files plus one `register(...)` line in `arbridge.providers`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import Clock
from arbridge.config import Settings
from arbridge.connectors.base import LedgerConnector
from arbridge.crypto import Keyring
from arbridge.errors import ArbridgeError
from arbridge.sync.model import Connection, WebhookEvent
from arbridge.sync.runner import Mapper, register_mapper, unregister_mapper


class Services(Protocol):
    """What a provider may use of a running arbridge (the Runtime has all of it)."""

    settings: Settings
    sessions: sessionmaker[Session]
    keyring: Keyring
    clock: Clock


# (services, connection) -> the connector that reads and writes that connection's ledger.
ConnectorFactory = Callable[[Services, Connection], LedgerConnector]
# (session, stored event, clock) -> None: brings in what a webhook event says changed.
EventHandler = Callable[[Session, WebhookEvent, Clock], None]


@dataclass(frozen=True)
class CallLimits:
    """A provider's published API budget per tenant (None: no such limit)."""

    per_minute: int | None = None
    concurrent: int | None = None
    daily: int | None = None


@dataclass(frozen=True)
class Webhooks:
    """How a provider's webhook deliveries are verified, parsed and handled.

    `receive(session, clock, headers, body, secret)` verifies and stores a delivery (raising
    SignatureInvalid first); `secret(settings)` is the verifier token it is checked with;
    `handlers` maps each event type to the handler that brings the change in; `refetch(services)`,
    where given, first brings in the changes of many due events at once (returning how many it
    handled), and the handlers take what it leaves."""

    receive: Callable[..., Any]
    secret: Callable[[Settings], str | None]
    handlers: Mapping[str, EventHandler]
    refetch: Callable[[Services], int] | None = None


@dataclass(frozen=True)
class Provider:
    name: str  # Connection.provider and the `source` of every synced row
    label: str  # what the owner reads: "QuickBooks", "Xero"
    connector: ConnectorFactory
    mapper: Mapper
    # The provider's settings section (settings.quickbooks, ...), None while unconfigured.
    section: Callable[[Settings], Any] = field(default=lambda _s: None)
    # Usable without any settings (the demo ledger); otherwise only when `section` is set.
    always_available: bool = False
    # (services) -> the provider's OAuth client; None for a provider without OAuth.
    oauth: Callable[[Services], Any] | None = None
    webhooks: Webhooks | None = None
    limits: CallLimits = field(default_factory=CallLimits)
    # What the settings page calls the ledger ("QuickBooks Online"); `label` when None.
    long_label: str | None = None
    # The provider's pages, named rather than imported (providers never import Flask): the
    # dotted path of a module with a Flask blueprint `bp`, which the web app registers, and
    # the template of its part of the settings page's Connections section, which the settings
    # page includes with `provider` and the company's ledger `connection` in its context.
    web_module: str | None = None
    settings_template: str | None = None
    # (services, connection) -> seconds a scheduled sync waits (the daily allowance is low and
    # kept for webhooks and write-backs), or None when it may run.
    sync_deferral: Callable[[Services, Connection], float | None] | None = None

    def available(self, settings: Settings) -> bool:
        return self.always_available or self.section(settings) is not None


_PROVIDERS: dict[str, Provider] = {}


def register(provider: Provider) -> Provider:
    """Add a provider (or replace the entry of that name); its mapper goes to the runner."""
    _PROVIDERS[provider.name] = provider
    register_mapper(provider.name, provider.mapper)
    return provider


def unregister(name: str) -> None:
    """Remove a provider (a test's throwaway one)."""
    _PROVIDERS.pop(name, None)
    unregister_mapper(name)


def get(name: str) -> Provider:
    try:
        return _PROVIDERS[name]
    except KeyError:
        raise ArbridgeError(f"the {name} connector is not available in this version") from None


def providers() -> Iterator[Provider]:
    return iter(tuple(_PROVIDERS.values()))


def connector_for(services: Services, conn: Connection) -> LedgerConnector:
    return get(conn.provider).connector(services, conn)


def webhook_handlers(
    clock: Clock,
) -> dict[tuple[str, str], Callable[[Session, WebhookEvent], None]]:
    """{(provider, event type): handler} for every registered provider's webhooks."""
    out: dict[tuple[str, str], Callable[[Session, WebhookEvent], None]] = {}
    for p in providers():
        if p.webhooks is None:
            continue
        for event_type, handler in p.webhooks.handlers.items():
            out[(p.name, event_type)] = _bound(handler, clock)
    return out


def sync_deferral(services: Services, conn: Connection) -> float | None:
    """Seconds the connection's scheduled sync waits, or None when it may run now."""
    defer = get(conn.provider).sync_deferral
    return defer(services, conn) if defer is not None else None


def refetch_pending(services: Services) -> int:
    """Every provider's batched pass over its due events; returns how many were handled."""
    return sum(
        p.webhooks.refetch(services)
        for p in providers()
        if p.webhooks is not None and p.webhooks.refetch is not None
    )


def _bound(handler: EventHandler, clock: Clock) -> Callable[[Session, WebhookEvent], None]:
    return lambda session, event: handler(session, event, clock)
