"""Which secrets sign Stripe's events for the whole install (its endpoint's, the demo's)."""

from __future__ import annotations

import hashlib
import hmac
import logging

from arbridge.runtime import Runtime

log = logging.getLogger(__name__)


# --- Which Stripe -------------------------------------------------------------------------------
def simulated_webhook_secret(rt: Runtime) -> str:
    """The demo's simulated Stripe signs its events with a secret derived from the instance's."""
    assert rt.settings.secret_key
    return (
        "whsec_sim_"
        + hmac.new(rt.settings.secret_key.encode(), b"simulated-stripe", hashlib.sha256).hexdigest()
    )


def webhook_secret(rt: Runtime) -> str | None:
    """The install's own endpoint's secret (platform, or a single business's install key)."""
    return rt.settings.stripe_webhook_secret or (
        None if rt.settings.stripe_secret_key else simulated_webhook_secret(rt)
    )


def install_webhook_secrets(rt: Runtime) -> list[str]:
    """Secrets that sign for the whole install: its endpoint's, and (with no Stripe key, so
    the demo's simulation may be in use) the simulation's, which nobody outside can know."""
    found = [rt.settings.stripe_webhook_secret] if rt.settings.stripe_webhook_secret else []
    if not rt.settings.stripe_secret_key:
        found.append(simulated_webhook_secret(rt))
    return found
