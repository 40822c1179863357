"""The outbox kinds messaging carries out."""

from __future__ import annotations

from arbridge.remind import send_email
from arbridge.runtime import Runtime
from arbridge.sync.outbox import Handler
from arbridge.sync.outbox_kinds import OutboxKind


def outbox_kinds(rt: Runtime) -> dict[OutboxKind, Handler]:
    return {
        # SMTP has no idempotency key: a crash mid-send marks the row failed, never resends.
        OutboxKind.EMAIL: Handler(lambda m: send_email(rt, m), idempotent=False),
    }
