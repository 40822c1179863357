"""The outbox kinds messaging carries out."""

from __future__ import annotations

from collections.abc import Mapping

from arbridge.runtime import Runtime
from arbridge.services.messaging.email import EmailChannel
from arbridge.services.messaging.sender import Fallback, Preparer, send
from arbridge.services.messaging.sms import SMS
from arbridge.sync.outbox import Handler
from arbridge.sync.outbox_kinds import OutboxKind


def outbox_kinds(
    rt: Runtime,
    preparers: Mapping[str, Preparer],
    fallbacks: Mapping[str, Fallback] | None = None,
) -> dict[OutboxKind, Handler]:
    """`preparers` re-check and compose the messages other services own, by their "mail";
    `fallbacks` carry on by other means when a text cannot reach its number."""
    # One SMTP connection for every email of a drain, closed when the drain ends.
    email = EmailChannel(keep_open=True)
    return {
        # SMTP has no idempotency key: a crash mid-send marks the row failed, never resends.
        OutboxKind.EMAIL: Handler(
            lambda m: send(rt, m, email, preparers), idempotent=False, done=email.close
        ),
        # Twilio has none either, but the channel finds a text an interrupted attempt sent
        # before it sends again (services/messaging/sms.py), so a retry is safe.
        OutboxKind.SMS: Handler(
            lambda m: send(rt, m, SMS, preparers, fallbacks or {}), idempotent=True
        ),
    }
