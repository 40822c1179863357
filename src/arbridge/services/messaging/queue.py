"""Queuing a message without naming its medium: callers say what to send and to whom, the
channel says which outbox rows carry it (email, SMS)."""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.collections.templates import Rendered
from arbridge.services.messaging.channel import Channel
from arbridge.services.messaging.email import EMAIL
from arbridge.services.messaging.sms import SMS
from arbridge.sync.outbox import enqueue

# Every channel messages go out through; the mailbox shows what waits in their outbox rows.
CHANNELS: tuple[Channel, ...] = (EMAIL, SMS)
MESSAGE_KINDS: tuple[str, ...] = tuple(c.outbox_kind.value for c in CHANNELS)


def queue_test_message(
    session: Session,
    clock: Clock,
    company_id: int,
    to: str,
    rendered: Rendered,
    channel: Channel = EMAIL,
) -> None:
    """A template rendered for an invoice, sent to the owner to see it as a customer would."""
    enqueue(
        session,
        clock,
        company_id=company_id,
        kind=channel.outbox_kind,
        key=f"test:{company_id}:{secrets.token_hex(8)}",
        payload={
            "mail": "test",
            "to": to,
            "subject": f"[Test] {rendered.subject}",
            "text": rendered.text,
            "html": rendered.html,
        },
    )
