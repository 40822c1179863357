"""The outbox kinds messaging carries out."""

from __future__ import annotations

from collections.abc import Mapping

from arbridge.runtime import Runtime
from arbridge.services.messaging.sender import Preparer, send_email
from arbridge.sync.outbox import Handler
from arbridge.sync.outbox_kinds import OutboxKind


def outbox_kinds(rt: Runtime, preparers: Mapping[str, Preparer]) -> dict[OutboxKind, Handler]:
    """`preparers` re-check and compose the messages other services own, by their "mail"."""
    return {
        # SMTP has no idempotency key: a crash mid-send marks the row failed, never resends.
        OutboxKind.EMAIL: Handler(lambda m: send_email(rt, m, preparers), idempotent=False),
    }
