"""Stripe: every call to Stripe lives in this package (Saleor's lesson), with a pinned API version."""

from arbridge.connectors.stripe.gateway import (
    CHARGE_KEY,
    INSTALLMENT_KEY,
    PLAN_KEY,
    STRIPE_API_VERSION,
    ChargeResult,
    CheckoutRequest,
    CheckoutSession,
    CustomerRequest,
    OffSessionCharge,
    PaymentGateway,
    SavedPaymentMethod,
    StripeGateway,
    from_stripe_amount,
    to_stripe_amount,
)

__all__ = [
    "CHARGE_KEY",
    "INSTALLMENT_KEY",
    "PLAN_KEY",
    "STRIPE_API_VERSION",
    "ChargeResult",
    "CheckoutRequest",
    "CheckoutSession",
    "CustomerRequest",
    "OffSessionCharge",
    "PaymentGateway",
    "SavedPaymentMethod",
    "StripeGateway",
    "from_stripe_amount",
    "to_stripe_amount",
]
