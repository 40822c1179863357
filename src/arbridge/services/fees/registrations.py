"""The outbox kinds the late-fee service carries out."""

from __future__ import annotations

from arbridge.runtime import Runtime
from arbridge.services.fees.ledger import post_fee_invoice, void_fee_invoice
from arbridge.sync.outbox import Handler
from arbridge.sync.outbox_kinds import OutboxKind


def outbox_kinds(rt: Runtime) -> dict[OutboxKind, Handler]:
    return {
        # Every ledger takes our key as an idempotency key, so a retry after a crash is safe.
        OutboxKind.LEDGER_FEE_INVOICE: Handler(lambda m: post_fee_invoice(rt, m), idempotent=True),
        OutboxKind.LEDGER_FEE_VOID: Handler(lambda m: void_fee_invoice(rt, m), idempotent=True),
    }
