"""The demo's simulated Stripe: its Checkout, its events (verified with its own secret) and its
bank payments clearing when their time comes."""

from __future__ import annotations

import logging

from arbridge.connectors.stripe.simulated import SimulatedStripe
from arbridge.runtime import Runtime
from arbridge.services.payments.events import ingest_stripe
from arbridge.services.payments.webhook_secrets import simulated_webhook_secret

log = logging.getLogger(__name__)


def simulated_stripe(rt: Runtime) -> SimulatedStripe:
    return SimulatedStripe(
        rt.settings.instance_path / "simulated-stripe.json",
        rt.clock,
        rt.settings.base_url,
        simulated_webhook_secret(rt),
        # The simulation's events are verified with the simulation's own secret, whatever
        # secrets the install has configured for real Stripe.
        deliver=lambda body, header: ingest_stripe(
            rt, body, header, only_secret=simulated_webhook_secret(rt)
        ),
    )


def settle_simulated_payments(rt: Runtime) -> int:
    """The demo's bank payments clear (or bounce) when their time comes."""
    if not (rt.settings.instance_path / "simulated-stripe.json").exists():
        return 0
    return simulated_stripe(rt).settle_due()
