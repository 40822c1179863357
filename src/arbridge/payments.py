"""Getting paid: kept so that `arbridge.payments.X` keeps working; the code lives in
`arbridge.services.payments`, one module per job."""

from arbridge.services.payments.accounts import (
    StripeStatus,
    connect_with_key,
    disconnect_stripe,
    finish_onboarding,
    gateway_for,
    set_webhook_secret,
    start_onboarding,
    stripe_connection,
    stripe_status,
    webhook_url,
)
from arbridge.services.payments.checkout import handle_checkout_return, start_checkout
from arbridge.services.payments.events import Observed, ingest_stripe, observe
from arbridge.services.payments.quote import Quote, methods_for, quote
from arbridge.services.payments.recording import handle_stripe_event, record
from arbridge.services.payments.refunds import (
    RefundStatus,
    refit_to_ledger,
    refund_overpayment,
    refund_status,
)
from arbridge.services.payments.reversals import row_money
from arbridge.services.payments.simulated import settle_simulated_payments, simulated_stripe
from arbridge.services.payments.webhook_secrets import (
    install_webhook_secrets,
    simulated_webhook_secret,
    webhook_secret,
)

__all__ = [
    "Observed",
    "Quote",
    "RefundStatus",
    "StripeStatus",
    "connect_with_key",
    "disconnect_stripe",
    "finish_onboarding",
    "gateway_for",
    "handle_checkout_return",
    "handle_stripe_event",
    "ingest_stripe",
    "install_webhook_secrets",
    "methods_for",
    "observe",
    "quote",
    "record",
    "refit_to_ledger",
    "refund_overpayment",
    "refund_status",
    "row_money",
    "set_webhook_secret",
    "settle_simulated_payments",
    "simulated_stripe",
    "simulated_webhook_secret",
    "start_checkout",
    "start_onboarding",
    "stripe_connection",
    "stripe_status",
    "webhook_secret",
    "webhook_url",
]
