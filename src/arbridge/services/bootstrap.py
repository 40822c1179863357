"""Wiring: the outbox's and the webhook inbox's dispatch tables, built from what each service
registers (Cosmic Python's bootstrap). The worker asks here; no service imports a dispatcher
(but to handle, at once and with its own handlers, the event a request just stored: a Twilio
STOP), and services that need each other's work get it passed in here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from arbridge import providers
from arbridge.runtime import Runtime
from arbridge.services.delivery import registrations as delivery
from arbridge.services.fees import registrations as fees
from arbridge.services.ledger import registrations as ledger
from arbridge.services.messaging import registrations as messaging
from arbridge.services.payments import registrations as payments
from arbridge.services.payments.refunds import refit_to_ledger
from arbridge.services.reminders import registrations as reminders
from arbridge.sync.outbox import Handler
from arbridge.sync.outbox_kinds import OutboxKind
from arbridge.webhooks.dispatch import EventHandler


def outbox_handlers(rt: Runtime) -> dict[str, Handler]:
    """Every outbox kind's handler, each registered by exactly one service."""
    return merge_outbox(
        [
            ledger.outbox_kinds(rt, refit_to_ledger),
            payments.outbox_kinds(rt),
            fees.outbox_kinds(rt),
            delivery.outbox_kinds(rt),
            messaging.outbox_kinds(
                rt,
                {**reminders.preparers(), **payments.preparers(), **delivery.preparers()},
                reminders.fallbacks(),
            ),
        ]
    )


def merge_outbox(registrations: Iterable[Mapping[OutboxKind, Handler]]) -> dict[str, Handler]:
    """One table from the services' registrations: a kind registered twice, or a kind nobody
    carries out (its rows would wait forever), stops the worker at startup."""
    table: dict[str, Handler] = {}
    for registered in registrations:
        for kind, handler in registered.items():
            if kind.value in table:
                raise RuntimeError(f"outbox kind {kind.value} is registered twice")
            table[kind.value] = handler
    missing = {k.value for k in OutboxKind} - table.keys()
    if missing:
        raise RuntimeError(f"outbox kinds without a handler: {sorted(missing)}")
    return table


def webhook_handlers(rt: Runtime) -> dict[tuple[str, str], EventHandler]:
    table = dict(payments.webhook_events(rt))
    table.update(reminders.webhook_events(rt))
    # Each ledger provider's events (a changed record to sync in), from the provider registry.
    table.update(providers.webhook_handlers(rt.clock))
    return table
