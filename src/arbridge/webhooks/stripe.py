"""Stripe deliveries: verify over the raw body, parse into inbox events (one event per delivery).

One install may hold several signing secrets: the install's own endpoint (platform or single
business), the demo's simulation, and one per business that connected its own Stripe key (each
such business's endpoint signs with a secret of its own). A delivery is trusted only through
the secret that signed it, and that secret says which company it came for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from arbridge.errors import ArbridgeError, SignatureInvalid
from arbridge.webhooks.inbox import InboxEvent
from arbridge.webhooks.verify import (
    check_stripe_timestamp,
    parse_stripe_header,
    stripe_signature_matches,
)

T = TypeVar("T")

# Nothing predates Stripe (its own example objects say 2009); one from more than a day ahead of
# our clock is not real.
EARLIEST_CREATED = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
MAX_EVENT_ID, MAX_EVENT_TYPE = 255, 100


class MalformedEvent(ArbridgeError):
    """A correctly signed delivery whose event cannot be stored as it is."""


def unverified_event(body: bytes) -> dict[str, Any]:
    """The body as JSON, to choose which secrets to try: nothing in it is trusted yet."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError) as e:  # nested deeper than the parser's stack
        raise SignatureInvalid("the body is not a Stripe event") from e
    if not isinstance(event, dict):
        raise SignatureInvalid("the body is not a Stripe event")
    return event


def signed_by(
    body: bytes, header: str | None, candidates: Iterable[tuple[str, T]], now: datetime
) -> T:
    """The tag of the first candidate secret that signed this delivery, within Stripe's 300 s.

    `candidates` may be lazy: secrets are read (decrypted) only until one matches."""
    timestamp, signatures = parse_stripe_header(header)
    tried = 0
    for secret, tag in candidates:
        if not secret:
            continue
        tried += 1
        if stripe_signature_matches(body, timestamp, signatures, secret):
            check_stripe_timestamp(timestamp, now.timestamp())
            return tag
    if not tried:
        raise SignatureInvalid(
            "no Stripe webhook secret is configured, so no delivery can be trusted"
        )
    raise SignatureInvalid("the Stripe signature does not match the body")


def _created(raw: object, now: datetime) -> datetime:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise MalformedEvent(f"the event's created time is not a Unix timestamp: {raw!r:.40}")
    if not EARLIEST_CREATED.timestamp() <= raw <= (now + FUTURE_SLACK).timestamp():
        raise MalformedEvent(f"the event's created time is not plausible: {raw}")
    return datetime.fromtimestamp(raw, UTC)


def stripe_event(body: bytes, now: datetime, tenant_id: str | None = None) -> InboxEvent:
    """A verified delivery's event; refuses one that names no id, type, object or sane time."""
    try:
        event = json.loads(body)
        event_id, event_type = event["id"], event["type"]
        data = event["data"]["object"]
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise SignatureInvalid("the body is not a Stripe event") from e
    if not isinstance(data, dict):
        raise SignatureInvalid("the body is not a Stripe event")
    # Stripe's ids are a few dozen characters, its types under a hundred (the columns' sizes).
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID:
        raise MalformedEvent(f"the event's id is not a Stripe id: {event_id!r:.40}")
    if not isinstance(event_type, str) or not 0 < len(event_type) <= MAX_EVENT_TYPE:
        raise MalformedEvent(f"the event's type is not a Stripe event type: {event_type!r:.40}")
    account = event.get("account")
    return InboxEvent(
        event_id=event_id,
        event_type=event_type,
        # The account whose own secret signed it, when one did (whatever the body claims);
        # else Connect events name the connected account (the platform's secret signed them).
        tenant_id=tenant_id or (account if isinstance(account, str) and account else None),
        payload=event,
        occurred_at=_created(event.get("created"), now),
    )


def parse_stripe_delivery(
    body: bytes, header: str | None, secret: str | None, now: datetime
) -> InboxEvent:
    """One secret: verify, then parse."""
    signed_by(body, header, [(secret, None)] if secret else [], now)
    return stripe_event(body, now)
