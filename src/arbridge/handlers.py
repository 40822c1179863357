"""The dispatch tables and the ledger write-backs under their old import path; the tables are
built in `arbridge.services.bootstrap` from what each service registers."""

from arbridge.runtime import Runtime
from arbridge.services.bootstrap import outbox_handlers, webhook_handlers
from arbridge.services.ledger import writebacks
from arbridge.services.ledger.writebacks import (
    ledger_outstanding,
    post_ledger_discount,
    reverse_ledger_payment,
)
from arbridge.services.payments.checkout import stripe_expire_session
from arbridge.services.payments.events import STRIPE_EVENTS
from arbridge.services.payments.refunds import refit_to_ledger, stripe_refund
from arbridge.sync.model import OutboxMessage
from arbridge.sync.outbox_kinds import OutboxKind, ledger_payment_payload

LEDGER_PAYMENT = OutboxKind.LEDGER_PAYMENT.value


def post_ledger_payment(rt: Runtime, message: OutboxMessage) -> str | None:
    """The ledger write-back as the outbox runs it (refitting a refused one)."""
    return writebacks.post_ledger_payment(rt, message, refit_to_ledger)


__all__ = [
    "LEDGER_PAYMENT",
    "STRIPE_EVENTS",
    "ledger_outstanding",
    "ledger_payment_payload",
    "outbox_handlers",
    "post_ledger_discount",
    "post_ledger_payment",
    "reverse_ledger_payment",
    "stripe_expire_session",
    "stripe_refund",
    "webhook_handlers",
]
