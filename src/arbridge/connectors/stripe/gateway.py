"""The payment gateway interface, and Stripe behind it.

Amounts cross into Stripe's integer minor units here and nowhere else. Stripe's own list of
zero- and three-decimal currencies wins over ISO where they differ (docs.stripe.com/currencies).
Stripe errors become arbridge's few connector errors in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import stripe

from arbridge.errors import AuthExpired, ConnectorError, NotFound, RateLimited, Rejected, Transient
from arbridge.money import Money, check_currency

log = logging.getLogger(__name__)

STRIPE_API_VERSION = "2026-10-28.endive"
REFUND_KEY = "arbridge_refund_key"  # a refund's metadata: the outbox key that asked for it
# docs.stripe.com/currencies#zero-decimal and #three-decimal
ZERO_DECIMAL = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "JPY",
        "KMF",
        "KRW",
        "MGA",
        "PYG",
        "RWF",
        "UGX",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])


def stripe_exponent(currency: str) -> int:
    currency = check_currency(currency)
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def to_stripe_amount(money: Money) -> int:
    """Money -> Stripe's integer amount. Refuses an amount Stripe cannot express exactly."""
    scaled = money.amount.scaleb(stripe_exponent(money.currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(
            f"{money} cannot be charged exactly in Stripe's units for {money.currency}"
        )
    return int(scaled)


def from_stripe_amount(amount: int, currency: str) -> Money:
    currency = check_currency(currency)
    return Money(Decimal(amount).scaleb(-stripe_exponent(currency)), currency)


@dataclass(frozen=True)
class CheckoutRequest:
    amount: Money
    description: str
    methods: Sequence[str]  # "card", "us_bank_account"
    success_url: str
    cancel_url: str
    expires_at: datetime
    idempotency_key: str
    metadata: Mapping[str, str]
    customer_email: str | None = None


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str | None
    status: str  # open, complete, expired
    payment_status: str  # paid, unpaid, no_payment_required
    payment_intent: str | None
    amount: Money | None
    expires_at: datetime | None
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_stripe(cls, obj: Mapping[str, Any]) -> CheckoutSession:
        currency = obj.get("currency")
        total = obj.get("amount_total")
        pi = obj.get("payment_intent")
        return cls(
            id=obj["id"],
            url=obj.get("url"),
            status=obj.get("status") or "open",
            payment_status=obj.get("payment_status") or "unpaid",
            payment_intent=pi if isinstance(pi, str) or pi is None else pi.get("id"),
            amount=from_stripe_amount(total, currency) if currency and total is not None else None,
            expires_at=datetime.fromtimestamp(obj["expires_at"], UTC)
            if obj.get("expires_at")
            else None,
            metadata=dict(obj.get("metadata") or {}),
        )


class PaymentGateway(Protocol):
    simulated: bool

    def create_checkout_session(self, request: CheckoutRequest) -> CheckoutSession: ...

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession: ...

    def expire_checkout_session(self, session_id: str, idempotency_key: str) -> CheckoutSession: ...

    def refund(self, payment_intent: str, amount: Money | None, idempotency_key: str) -> str: ...

    def find_refund(self, payment_intent: str, keys: Sequence[str]) -> str | None: ...

    def capabilities(self) -> dict[str, str]: ...


def _map_error(e: stripe.StripeError) -> ConnectorError:
    """Stripe's errors -> ours, in one place. Only RateLimited and Transient are retried."""
    message = f"Stripe: {e.user_message or e._message or type(e).__name__}"
    if isinstance(e, stripe.RateLimitError):
        return RateLimited(message, retry_after=2.0)
    if isinstance(e, stripe.APIConnectionError):
        return Transient(message)
    if isinstance(e, (stripe.AuthenticationError, stripe.PermissionError)):
        return AuthExpired(message)
    if isinstance(e, stripe.InvalidRequestError) and e.http_status == 404:
        return NotFound(message)
    if isinstance(e, stripe.APIError) or (e.http_status or 0) >= 500:
        return Transient(message)
    return Rejected(message)


class StripeGateway:
    """Stripe through StripeClient: a business's own (restricted) key, or the platform's key
    acting for a connected account (`stripe_account` on every call)."""

    simulated = False

    def __init__(
        self, api_key: str, *, account: str | None = None, api_base: str | None = None
    ) -> None:
        self.account_id = account
        self.client = stripe.StripeClient(
            api_key,
            stripe_account=account,
            stripe_version=STRIPE_API_VERSION,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=2,
            # requests (not urllib) so that tests fake Stripe at the HTTP boundary with `responses`.
            http_client=stripe.RequestsClient(timeout=30),
        )

    def create_checkout_session(self, request: CheckoutRequest) -> CheckoutSession:
        amount = request.amount
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": amount.currency.lower(),
                        "unit_amount": to_stripe_amount(amount),
                        "product_data": {"name": request.description},
                    },
                }
            ],
            "payment_method_types": list(request.methods),
            "payment_intent_data": {
                "metadata": dict(request.metadata),
                "description": request.description,
            },
            "metadata": dict(request.metadata),
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "expires_at": int(request.expires_at.timestamp()),
        }
        if request.customer_email:
            params["customer_email"] = request.customer_email
        try:
            session = self.client.v1.checkout.sessions.create(
                params,
                {"idempotency_key": request.idempotency_key},  # type: ignore[arg-type]
            )
        except stripe.StripeError as e:
            raise _map_error(e) from e
        return CheckoutSession.from_stripe(session.to_dict())

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        try:
            return CheckoutSession.from_stripe(
                self.client.v1.checkout.sessions.retrieve(session_id).to_dict()
            )
        except stripe.StripeError as e:
            raise _map_error(e) from e

    def expire_checkout_session(self, session_id: str, idempotency_key: str) -> CheckoutSession:
        """Close a session so it can no longer be paid (`POST /v1/checkout/sessions/{id}/expire`).
        Stripe expires only open sessions and answers 400 for any other: then the session is
        read back, and one already complete or expired is returned as it is."""
        try:
            return CheckoutSession.from_stripe(
                self.client.v1.checkout.sessions.expire(
                    session_id,
                    options={"idempotency_key": idempotency_key},  # type: ignore[typeddict-item]
                ).to_dict()
            )
        except stripe.InvalidRequestError as e:
            if e.http_status != 400:
                raise _map_error(e) from e
            refused: ConnectorError = _map_error(e)
        except stripe.StripeError as e:
            raise _map_error(e) from e
        current = self.retrieve_checkout_session(session_id)
        if current.status == "open":
            raise refused
        return current

    def refund(self, payment_intent: str, amount: Money | None, idempotency_key: str) -> str:
        # The key goes in the metadata too, so a later attempt can find this refund at Stripe
        # when its outcome was never learnt (`find_refund`).
        params: dict[str, Any] = {
            "payment_intent": payment_intent,
            "metadata": {REFUND_KEY: idempotency_key},
        }
        if amount is not None:
            params["amount"] = to_stripe_amount(amount)
        try:
            refund = self.client.v1.refunds.create(params, {"idempotency_key": idempotency_key})  # type: ignore[arg-type]
        except stripe.StripeError as e:
            raise _map_error(e) from e
        return refund.id

    def find_refund(self, payment_intent: str, keys: Sequence[str]) -> str | None:
        """A refund of this payment made by one of our earlier attempts (by the key in its
        metadata) that did not fail; None when Stripe has none."""
        wanted = set(keys)
        try:
            found = self.client.v1.refunds.list(
                {"payment_intent": payment_intent, "limit": 100}  # type: ignore[typeddict-item]
            )
        except stripe.StripeError as e:
            raise _map_error(e) from e
        for refund in found.auto_paging_iter():
            data = refund.to_dict()
            if (data.get("metadata") or {}).get(REFUND_KEY) in wanted and data.get(
                "status"
            ) not in ("failed", "canceled"):
                return str(data["id"])
        return None

    def account(self) -> dict[str, Any]:
        """The account this gateway acts for (the connected one, or the key's own)."""
        try:
            account = (
                self.client.v1.accounts.retrieve(self.account_id)
                if self.account_id
                else self.client.v1.accounts.retrieve_current()
            )
        except stripe.StripeError as e:
            raise _map_error(e) from e
        return account.to_dict()

    def create_connected_account(
        self, *, country: str, email: str, business_name: str, reference: str
    ) -> str:
        """A Standard connected account for a business (platform mode); returns its id."""
        params: dict[str, Any] = {
            "type": "standard",
            "country": country,
            "email": email,
            "business_profile": {"name": business_name},
            "metadata": {"arbridge_company": reference},
        }
        try:
            created = self.client.v1.accounts.create(
                params, {"idempotency_key": f"connect:{reference}"}
            )  # type: ignore[arg-type]
        except stripe.StripeError as e:
            raise _map_error(e) from e
        return created.id

    def onboarding_link(self, account: str, *, refresh_url: str, return_url: str) -> str:
        """Stripe-hosted onboarding (Account Links) for a connected account."""
        params = {
            "account": account,
            "refresh_url": refresh_url,
            "return_url": return_url,
            "type": "account_onboarding",
        }
        try:
            return self.client.v1.account_links.create(params).url  # type: ignore[arg-type]
        except stripe.StripeError as e:
            raise _map_error(e) from e

    # --- The business's own webhook endpoint (a key pasted by a business, not the platform) ---
    def create_webhook_endpoint(
        self,
        url: str,
        events: Sequence[str],
        *,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> tuple[str, str] | None:
        """Create an endpoint sending `events` to `url`; returns (id, signing secret), or None
        when the key may not manage webhook endpoints (restricted keys usually may not: 403).

        Endpoints left at the same URL by an earlier connection of the same business (same
        metadata) are deleted first: each would sign with a secret we no longer hold."""
        try:
            listed = self.client.v1.webhook_endpoints.list({"limit": 100})
            for old in listed.auto_paging_iter():
                seen = old.to_dict()
                if seen.get("url") == url and (seen.get("metadata") or {}) == dict(metadata):
                    self.delete_webhook_endpoint(old.id, f"{idempotency_key}:delete:{old.id}")
            created = self.client.v1.webhook_endpoints.create(
                {
                    "url": url,
                    "enabled_events": list(events),  # type: ignore[typeddict-item]
                    "metadata": dict(metadata),
                    "description": "arbridge: payments collected through payment links",
                    "api_version": STRIPE_API_VERSION,  # type: ignore[typeddict-item]
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.PermissionError as e:
            log.info("this Stripe key may not manage webhook endpoints: %s", e.user_message)
            return None
        except stripe.StripeError as e:
            raise _map_error(e) from e
        if not created.secret:
            raise Transient("Stripe created a webhook endpoint without a signing secret")
        return created.id, created.secret

    def delete_webhook_endpoint(self, endpoint_id: str, idempotency_key: str) -> None:
        """Delete an endpoint; one already gone counts as deleted."""
        try:
            self.client.v1.webhook_endpoints.delete(
                endpoint_id, options={"idempotency_key": idempotency_key}
            )
        except stripe.InvalidRequestError as e:
            if e.http_status != 404:
                raise _map_error(e) from e
        except stripe.StripeError as e:
            raise _map_error(e) from e

    def capabilities(self) -> dict[str, str]:
        """Which payment methods the account can take: {"card_payments": "active", ...}."""
        try:
            account = (
                self.client.v1.accounts.retrieve(self.account_id)
                if self.account_id
                else self.client.v1.accounts.retrieve_current()
            )
        except stripe.StripeError as e:
            raise _map_error(e) from e
        return dict(account.to_dict().get("capabilities") or {})
