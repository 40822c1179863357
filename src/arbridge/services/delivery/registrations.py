"""The outbox kind invoice delivery carries out, and the email it hands to messaging."""

from __future__ import annotations

from arbridge.runtime import Runtime
from arbridge.services.delivery.send import INVOICE_MAIL, prepare_invoice_email, send_invoice
from arbridge.services.messaging.sender import Preparer
from arbridge.sync.outbox import Handler
from arbridge.sync.outbox_kinds import OutboxKind


def outbox_kinds(rt: Runtime) -> dict[OutboxKind, Handler]:
    return {
        # The ledger is read before it is asked to send, and takes our key as its idempotency
        # key: a retry after a crash finds the invoice sent and sends nothing more.
        OutboxKind.INVOICE_SEND: Handler(lambda m: send_invoice(rt, m), idempotent=True),
    }


def preparers() -> dict[str, Preparer]:
    return {INVOICE_MAIL: prepare_invoice_email}
