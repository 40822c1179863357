"""The outbox kinds the ledger write-backs carry out."""

from __future__ import annotations

from arbridge.runtime import Runtime
from arbridge.services.ledger.writebacks import (
    Refit,
    post_ledger_discount,
    post_ledger_payment,
    reverse_ledger_payment,
)
from arbridge.sync.outbox import Handler
from arbridge.sync.outbox_kinds import OutboxKind


def outbox_kinds(rt: Runtime, refit: Refit) -> dict[OutboxKind, Handler]:
    """`refit` shrinks a refused write-back to what the ledger still has outstanding."""
    return {
        # Every ledger takes our key as an idempotency key (QuickBooks requestid, Xero
        # Idempotency-Key, the demo ledger's table), so a retry after a crash is safe.
        OutboxKind.LEDGER_PAYMENT: Handler(
            lambda m: post_ledger_payment(rt, m, refit), idempotent=True
        ),
        OutboxKind.LEDGER_DISCOUNT: Handler(lambda m: post_ledger_discount(rt, m), idempotent=True),
        OutboxKind.LEDGER_REVERSAL: Handler(
            lambda m: reverse_ledger_payment(rt, m), idempotent=True
        ),
    }
