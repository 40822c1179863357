"""The outbox kinds and Stripe webhook events the payments service owns."""

from __future__ import annotations

from arbridge.runtime import Runtime
from arbridge.services.messaging.sender import Preparer
from arbridge.services.payments.checkout import stripe_expire_session
from arbridge.services.payments.events import STRIPE_EVENTS
from arbridge.services.payments.failure_notice import (
    MAIL,
    OWNER_MAIL,
    prepare_owner_notice,
    prepare_payment_failed,
)
from arbridge.services.payments.plan_runs import MAIL as PLAN_MAIL
from arbridge.services.payments.plan_runs import plan_charge, prepare_plan_mail
from arbridge.services.payments.recording import handle_stripe_event
from arbridge.services.payments.refunds import stripe_refund
from arbridge.sync.outbox import Handler
from arbridge.sync.outbox_kinds import OutboxKind
from arbridge.webhooks.dispatch import EventHandler


def outbox_kinds(rt: Runtime) -> dict[OutboxKind, Handler]:
    return {
        # Stripe takes the outbox key as its Idempotency-Key.
        OutboxKind.STRIPE_REFUND: Handler(lambda m: stripe_refund(rt, m), idempotent=True),
        # Expiring a session twice changes nothing (and carries our key as Idempotency-Key).
        OutboxKind.STRIPE_EXPIRE_SESSION: Handler(
            lambda m: stripe_expire_session(rt, m), idempotent=True
        ),
        # Stripe takes the row's key (installment and attempt) as the charge's Idempotency-Key.
        OutboxKind.PLAN_CHARGE: Handler(lambda m: plan_charge(rt, m), idempotent=True),
    }


def preparers() -> dict[str, Preparer]:
    """The payments' own emails, written as they go out."""
    return {
        MAIL: prepare_payment_failed,
        OWNER_MAIL: prepare_owner_notice,
        PLAN_MAIL: prepare_plan_mail,
    }


def webhook_events(rt: Runtime) -> dict[tuple[str, str], EventHandler]:
    return {("stripe", kind): lambda s, e: handle_stripe_event(rt, s, e) for kind in STRIPE_EVENTS}
