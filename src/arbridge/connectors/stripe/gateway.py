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
from typing import Any, Literal, Protocol

import stripe

from arbridge.errors import AuthExpired, ConnectorError, NotFound, RateLimited, Rejected, Transient
from arbridge.money import Money, check_currency

log = logging.getLogger(__name__)

STRIPE_API_VERSION = "2026-10-28.endive"
REFUND_KEY = "arbridge_refund_key"  # a refund's metadata: the outbox key that asked for it
# An off-session PaymentIntent's metadata: the installment's key that asked for it, so that a
# charge whose answer was lost can be found after Stripe has forgotten the idempotency key (24 h).
CHARGE_KEY = "arbridge_charge_key"
# A plan's first payment names its plan and installment (payment_intent_data.metadata).
PLAN_KEY = "arbridge_plan"
INSTALLMENT_KEY = "arbridge_installment"
SAVABLE_METHODS = frozenset(["card", "us_bank_account"])
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
    # A plan's first payment: paid as this Stripe Customer, and with `save_payment_method` the
    # method is kept for off-session charges (`setup_future_usage=off_session`; for ACH this
    # collects the mandate). The metadata must then name the plan and the installment.
    customer: str | None = None
    save_payment_method: bool = False

    def __post_init__(self) -> None:
        if not self.save_payment_method:
            return
        if not self.customer:
            raise ValueError("a payment method is saved only for a Stripe Customer")
        if not set(self.methods) <= SAVABLE_METHODS:
            raise ValueError(f"only {sorted(SAVABLE_METHODS)} are saved for later charges")
        if not (self.metadata.get(PLAN_KEY) and self.metadata.get(INSTALLMENT_KEY)):
            raise ValueError(f"a saving checkout names {PLAN_KEY} and {INSTALLMENT_KEY}")


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
    customer: str | None = None

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
            customer=_id_of(obj.get("customer")),
        )


def _id_of(value: Any) -> str | None:
    """An id Stripe sends either as a string or, expanded, as the object."""
    if value is None or isinstance(value, str):
        return value
    return str(value["id"])


@dataclass(frozen=True)
class CustomerRequest:
    """The Stripe Customer of one arbridge customer (of one company): found by these ids in its
    metadata, or created once under a key derived from them."""

    company: str  # arbridge ids, as Stripe's metadata holds them
    customer: str
    name: str
    email: str | None = None

    @property
    def metadata(self) -> dict[str, str]:
        return {"arbridge_company": self.company, "arbridge_customer": self.customer}

    @property
    def idempotency_key(self) -> str:
        return f"stripe_customer:{self.company}:{self.customer}"


@dataclass(frozen=True)
class SavedPaymentMethod:
    """A payment method kept on a Stripe Customer for off-session charges."""

    id: str
    type: str  # card, us_bank_account
    customer: str | None
    brand: str | None  # the card's brand, or the bank's name
    last4: str | None
    exp_month: int | None = None  # cards only
    exp_year: int | None = None

    @classmethod
    def from_stripe(cls, obj: Mapping[str, Any]) -> SavedPaymentMethod:
        kind = obj.get("type") or ""
        details = obj.get(kind) or {}
        return cls(
            id=obj["id"],
            type=kind,
            customer=_id_of(obj.get("customer")),
            brand=details.get("brand") or details.get("bank_name"),
            last4=details.get("last4"),
            exp_month=details.get("exp_month"),
            exp_year=details.get("exp_year"),
        )


@dataclass(frozen=True)
class OffSessionCharge:
    """One installment charged to a saved payment method while the customer is away."""

    customer: str
    payment_method: str
    method_type: str  # the saved method's type: card, us_bank_account
    amount: Money
    idempotency_key: str  # one per installment (and attempt), chosen by the caller
    metadata: Mapping[str, str]
    description: str


ChargeOutcome = Literal["succeeded", "processing", "requires_action", "declined"]


@dataclass(frozen=True)
class ChargeResult:
    """What became of an off-session charge.

    succeeded: paid. processing: a bank debit under way; it succeeds or fails days later
    (`payment_intent.succeeded` / `payment_intent.payment_failed`). requires_action: the bank
    wants the customer to authenticate (`authentication_required`): bring them back with a link.
    declined: refused (`code` and `decline_code` say why); nothing was taken."""

    outcome: ChargeOutcome
    payment_intent: str | None
    code: str | None = None  # Stripe's error code: card_declined, authentication_required, ...
    decline_code: str | None = None  # the issuer's reason: insufficient_funds, ...
    message: str | None = None

    @classmethod
    def from_intent(cls, obj: Mapping[str, Any]) -> ChargeResult:
        """From a PaymentIntent in Stripe's shape."""
        status = obj.get("status")
        error = obj.get("last_payment_error") or {}
        if status == "succeeded":
            return cls("succeeded", obj["id"])
        if status == "processing":
            return cls("processing", obj["id"])
        return cls._failed(obj["id"], error, requires_action=status == "requires_action")

    @classmethod
    def from_error(cls, error: Mapping[str, Any]) -> ChargeResult:
        """From the `error` of Stripe's 402 answer (the PaymentIntent rides inside it)."""
        return cls._failed(_id_of(error.get("payment_intent")), error)

    @classmethod
    def _failed(
        cls, payment_intent: str | None, error: Mapping[str, Any], requires_action: bool = False
    ) -> ChargeResult:
        code, decline = error.get("code"), error.get("decline_code")
        if "authentication_required" in (code, decline):
            requires_action = True
        return cls(
            "requires_action" if requires_action else "declined",
            payment_intent,
            code=code or ("authentication_required" if requires_action else None),
            decline_code=decline,
            message=error.get("message"),
        )


class PaymentGateway(Protocol):
    simulated: bool

    def create_checkout_session(self, request: CheckoutRequest) -> CheckoutSession: ...

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession: ...

    def expire_checkout_session(self, session_id: str, idempotency_key: str) -> CheckoutSession: ...

    def refund(self, payment_intent: str, amount: Money | None, idempotency_key: str) -> str: ...

    def find_refund(self, payment_intent: str, keys: Sequence[str]) -> str | None: ...

    # --- Installment plans: a Customer, its saved payment method, off-session charges ---
    def find_or_create_customer(self, request: CustomerRequest) -> str: ...

    def saved_payment_method(self, session_id: str) -> SavedPaymentMethod | None: ...

    def list_payment_methods(self, customer: str) -> list[SavedPaymentMethod]: ...

    def charge_off_session(self, charge: OffSessionCharge) -> ChargeResult: ...

    def retrieve_charge(self, payment_intent: str) -> ChargeResult: ...

    def find_off_session_charge(
        self, customer: str, keys: Sequence[str]
    ) -> ChargeResult | None: ...

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
        if request.customer:
            params["customer"] = request.customer  # Stripe refuses customer_email alongside it
        elif request.customer_email:
            params["customer_email"] = request.customer_email
        if request.save_payment_method:
            params["payment_intent_data"]["setup_future_usage"] = "off_session"
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

    # --- Installment plans -------------------------------------------------------------------
    def find_or_create_customer(self, request: CustomerRequest) -> str:
        """The Stripe Customer of an arbridge customer: one already made for it (found by email
        and our ids in its metadata; listing is consistent, unlike search), else a new one under
        a key derived from our ids, so that a retried creation makes no second Customer."""
        try:
            if request.email:
                found = self.client.v1.customers.list(
                    {"email": request.email, "limit": 100}  # type: ignore[typeddict-item]
                )
                for known in found.auto_paging_iter():
                    meta = known.to_dict().get("metadata") or {}
                    if all(meta.get(k) == v for k, v in request.metadata.items()):
                        return known.id
            params: dict[str, Any] = {"name": request.name, "metadata": request.metadata}
            if request.email:
                params["email"] = request.email
            created = self.client.v1.customers.create(
                params,
                {"idempotency_key": request.idempotency_key},  # type: ignore[arg-type]
            )
        except stripe.StripeError as e:
            raise _map_error(e) from e
        return created.id

    def saved_payment_method(self, session_id: str) -> SavedPaymentMethod | None:
        """The payment method a completed saving Checkout left on its Customer (the
        PaymentIntent's payment_method); None while the session has none."""
        try:
            session = self.client.v1.checkout.sessions.retrieve(
                session_id,
                {"expand": ["payment_intent.payment_method"]},  # type: ignore[typeddict-item]
            ).to_dict()
            intent = session.get("payment_intent")
            if session.get("status") != "complete" or not intent:
                return None
            if isinstance(intent, str):
                intent = self.client.v1.payment_intents.retrieve(intent).to_dict()
            method = intent.get("payment_method")
            if not method:
                return None
            if isinstance(method, str):
                method = self.client.v1.payment_methods.retrieve(method).to_dict()
        except stripe.StripeError as e:
            raise _map_error(e) from e
        return SavedPaymentMethod.from_stripe(method)

    def list_payment_methods(self, customer: str) -> list[SavedPaymentMethod]:
        """The payment methods saved on a Customer."""
        try:
            found = self.client.v1.customers.payment_methods.list(
                customer,
                {"limit": 100},  # type: ignore[typeddict-item]
            )
            return [SavedPaymentMethod.from_stripe(m.to_dict()) for m in found.auto_paging_iter()]
        except stripe.StripeError as e:
            raise _map_error(e) from e

    def charge_off_session(self, charge: OffSessionCharge) -> ChargeResult:
        """Charge a saved payment method while the customer is away (`confirm`, `off_session`).

        The caller's key makes a retry safe: Stripe answers a repeated key with the first
        answer, a decline included. A decline or a bank's demand for authentication is an
        outcome, not an error; rate limits and lost connections are (retried by the caller)."""
        params: dict[str, Any] = {
            "amount": to_stripe_amount(charge.amount),
            "currency": charge.amount.currency.lower(),
            "customer": charge.customer,
            "payment_method": charge.payment_method,
            # The saved method's own type, so Stripe needs no return_url for redirect methods.
            "payment_method_types": [charge.method_type],
            "confirm": True,
            "off_session": True,
            "description": charge.description,
            "metadata": {**charge.metadata, CHARGE_KEY: charge.idempotency_key},
        }
        try:
            intent = self.client.v1.payment_intents.create(
                params,
                {"idempotency_key": charge.idempotency_key},  # type: ignore[arg-type]
            )
        except stripe.CardError as e:
            return ChargeResult.from_error((e.json_body or {}).get("error") or {})
        except stripe.StripeError as e:
            raise _map_error(e) from e
        return ChargeResult.from_intent(intent.to_dict())

    def retrieve_charge(self, payment_intent: str) -> ChargeResult:
        """Where an off-session charge stands now (a bank debit settles days later)."""
        try:
            return ChargeResult.from_intent(
                self.client.v1.payment_intents.retrieve(payment_intent).to_dict()
            )
        except stripe.StripeError as e:
            raise _map_error(e) from e

    def find_off_session_charge(self, customer: str, keys: Sequence[str]) -> ChargeResult | None:
        """A charge of this Customer made by one of our earlier attempts (by the key in its
        metadata) that took money or is taking it (succeeded, processing): for an answer lost
        longer than Stripe keeps idempotency keys (24 h). None when there is none."""
        wanted = set(keys)
        try:
            found = self.client.v1.payment_intents.list(
                {"customer": customer, "limit": 100}  # type: ignore[typeddict-item]
            )
            for intent in found.auto_paging_iter():
                data = intent.to_dict()
                if (data.get("metadata") or {}).get(CHARGE_KEY) not in wanted:
                    continue
                result = ChargeResult.from_intent(data)
                if result.outcome in ("succeeded", "processing"):
                    return result
        except stripe.StripeError as e:
            raise _map_error(e) from e
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
