"""Stripe deliveries: verify over the raw body, parse into inbox events (one event per delivery)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from arbridge.errors import SignatureInvalid
from arbridge.webhooks.inbox import InboxEvent
from arbridge.webhooks.verify import verify_stripe_signature


def parse_stripe_delivery(
    body: bytes, header: str | None, secret: str | None, now: datetime
) -> InboxEvent:
    verify_stripe_signature(body, header, secret, now.timestamp())
    try:
        event = json.loads(body)
        event_id, event_type = str(event["id"]), str(event["type"])
        data = event["data"]["object"]
    except (ValueError, KeyError, TypeError) as e:
        raise SignatureInvalid("the body is not a Stripe event") from e
    if not isinstance(data, dict):
        raise SignatureInvalid("the body is not a Stripe event")
    created = event.get("created")
    return InboxEvent(
        event_id=event_id,
        event_type=event_type,
        # Connect events name the connected account; a single business's own events do not.
        tenant_id=event.get("account"),
        payload=event,
        occurred_at=datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None,
    )
