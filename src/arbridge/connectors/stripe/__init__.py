"""Stripe: every call to Stripe lives in this package (Saleor's lesson), with a pinned API version."""

from arbridge.connectors.stripe.gateway import (
    STRIPE_API_VERSION,
    CheckoutRequest,
    CheckoutSession,
    PaymentGateway,
    StripeGateway,
    from_stripe_amount,
    to_stripe_amount,
)

__all__ = [
    "STRIPE_API_VERSION",
    "CheckoutRequest",
    "CheckoutSession",
    "PaymentGateway",
    "StripeGateway",
    "from_stripe_amount",
    "to_stripe_amount",
]
