"""A clearly labelled stand-in for Stripe, for the demo: no account, no network, no money.

It keeps its sessions in a JSON file, serves its "checkout page" through arbridge's own web app,
and reports outcomes the way Stripe does: as signed, Stripe-shaped events handed to the same
webhook ingestion code that real Stripe deliveries go through. Bank (ACH) payments settle a
little later, as they do for real (days there, seconds here).

Installment plans: a plan's first Checkout saves the payment method on a simulated Customer, and
each later installment is charged off-session. How a saved method answers is chosen when it is
saved (the page's choice, or a test's) and can be changed later (`set_payment_method_behaviour`):
a card that succeeds, declines or needs its holder; a bank account that succeeds or fails
`settle_days` days later by the clock (the simulated clock in the demo and tests).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from arbridge.clock import Clock
from arbridge.connectors.stripe.gateway import (
    CHARGE_KEY,
    STRIPE_API_VERSION,
    ChargeResult,
    CheckoutRequest,
    CheckoutSession,
    CustomerRequest,
    OffSessionCharge,
    SavedPaymentMethod,
    from_stripe_amount,
    to_stripe_amount,
)
from arbridge.crypto import open_private_lock, write_private_text
from arbridge.errors import NotFound, Rejected
from arbridge.money import Money

Deliver = Callable[[bytes, str], None]
ACH_SETTLES_AFTER = timedelta(seconds=20)
# How a saved payment method answers off-session charges. As Stripe's test methods do: card
# 4000000000000341 saves and then declines, 4000002760003184 always wants authentication, bank
# account 000111111113 is returned (R01) when the debit settles.
SAVED_BEHAVIOURS: dict[str, tuple[str, ...]] = {
    "card": ("succeeds", "declines", "requires_authentication"),
    "us_bank_account": ("succeeds", "fails"),
}
OFF_SESSION_ACH_SETTLE_DAYS = 4  # "up to 4 business days" (docs.stripe.com ACH Direct Debit)
_LAST4 = {
    ("card", "succeeds"): "4242",
    ("card", "declines"): "0341",
    ("card", "requires_authentication"): "3184",
    ("us_bank_account", "succeeds"): "6789",
    ("us_bank_account", "fails"): "1113",
}
# The errors Stripe answers with (a PaymentIntent's last_payment_error).
_DECLINED = {
    "type": "card_error",
    "code": "card_declined",
    "decline_code": "insufficient_funds",
    "message": "Your card has insufficient funds.",
}
_AUTHENTICATION = {
    "type": "card_error",
    "code": "authentication_required",
    "decline_code": "authentication_required",
    "message": "Your card was declined. This transaction requires authentication.",
}
_RETURNED = {
    "type": "invalid_request_error",
    "code": "insufficient_funds",
    "message": "The customer's account has insufficient funds to cover this payment.",
}


class _Install(Protocol):
    stripe_secret_key: str | None  # arbridge.config.Settings (which connectors may not import)


def simulation_allowed(settings: _Install) -> bool:
    """Is this a demo install, where the simulation may stand in for Stripe? Only without an
    install-wide Stripe key: with one, real Stripe pays, and the simulated checkout pages and
    settlement do not exist at all (its events were never trusted there either)."""
    return not settings.stripe_secret_key


def sign(body: bytes, secret: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class SimulatedStripe:
    simulated = True

    def __init__(
        self, path: Path, clock: Clock, base_url: str, webhook_secret: str, deliver: Deliver
    ) -> None:
        self.path = path
        self.clock = clock
        self.base_url = base_url
        self.webhook_secret = webhook_secret
        self.deliver = deliver

    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open_private_lock(self.path.with_suffix(".lock")) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = json.loads(self.path.read_text())
            except FileNotFoundError:
                state = {"sessions": {}, "idempotency": {}, "events": 0}
            for kind in ("customers", "payment_methods", "payment_intents"):
                state.setdefault(kind, {})  # a file written before installment plans
            yield state
            write_private_text(self.path, json.dumps(state, indent=1))

    def _session_obj(self, s: dict[str, Any]) -> dict[str, Any]:
        """A checkout.session object in Stripe's shape (the fields arbridge and Stripe agree on)."""
        return {
            "id": s["id"],
            "object": "checkout.session",
            "mode": "payment",
            "livemode": False,
            "amount_total": s["amount"],
            "amount_subtotal": s["amount"],
            "currency": s["currency"],
            "created": s["created"],
            "expires_at": s["expires_at"],
            "metadata": s["metadata"],
            "payment_intent": s["payment_intent"],
            "payment_method_types": s["methods"],
            "payment_status": s["payment_status"],
            "status": s["status"],
            "url": s["url"],
            "success_url": s["success_url"],
            "cancel_url": s["cancel_url"],
            "customer_details": {"email": s.get("email")},
            "customer": s.get("customer"),
        }

    def _method_obj(self, pm: dict[str, Any]) -> dict[str, Any]:
        """A payment_method object in Stripe's shape."""
        last4 = _LAST4[(pm["type"], pm["behaviour"])]
        if pm["type"] == "card":
            details: dict[str, Any] = {
                "brand": "visa",
                "country": "US",
                "exp_month": 12,
                "exp_year": pm["exp_year"],
                "funding": "credit",
                "last4": last4,
            }
        else:
            details = {
                "account_holder_type": "individual",
                "account_type": "checking",
                "bank_name": "STRIPE TEST BANK",
                "last4": last4,
                "routing_number": "110000000",
            }
        return {
            "id": pm["id"],
            "object": "payment_method",
            "created": pm["created"],
            "customer": pm["customer"],
            "livemode": False,
            "metadata": {},
            "type": pm["type"],
            pm["type"]: details,
        }

    def _emit(self, state: dict[str, Any], event_type: str, obj: dict[str, Any]) -> None:
        state["events"] += 1
        now = int(self.clock.now().timestamp())
        event = {
            "id": f"evt_sim_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": STRIPE_API_VERSION,
            "created": now,
            "livemode": False,
            "pending_webhooks": 1,
            "type": event_type,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": obj},
        }
        body = json.dumps(event).encode()
        self.deliver(body, sign(body, self.webhook_secret, now))

    def create_checkout_session(self, request: CheckoutRequest) -> CheckoutSession:
        with self._state() as state:
            known = state["idempotency"].get(request.idempotency_key)
            if known:
                return CheckoutSession.from_stripe(self._session_obj(state["sessions"][known]))
            sid = f"cs_sim_{secrets.token_hex(16)}"
            s = {
                "id": sid,
                "url": f"{self.base_url}/simulated-checkout/{sid}",
                "amount": to_stripe_amount(request.amount),
                "currency": request.amount.currency.lower(),
                "created": int(self.clock.now().timestamp()),
                "expires_at": int(request.expires_at.timestamp()),
                "metadata": dict(request.metadata),
                "payment_intent": f"pi_sim_{secrets.token_hex(12)}",
                "methods": list(request.methods),
                "payment_status": "unpaid",
                "status": "open",
                "description": request.description,
                "success_url": request.success_url,
                "cancel_url": request.cancel_url,
                "email": request.customer_email,
                "customer": request.customer,
                "save": request.save_payment_method,
            }
            state["sessions"][sid] = s
            state["idempotency"][request.idempotency_key] = sid
            return CheckoutSession.from_stripe(self._session_obj(s))

    def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        with self._state() as state:
            s = state["sessions"].get(session_id)
            if s is None:
                raise NotFound(f"no simulated checkout session {session_id}")
            if s["status"] == "open" and s["expires_at"] < self.clock.now().timestamp():
                s["status"] = "expired"
            return CheckoutSession.from_stripe(self._session_obj(s))

    def expire_checkout_session(self, session_id: str, idempotency_key: str) -> CheckoutSession:
        """Like Stripe: an open session expires; one no longer open stays as it is."""
        with self._state() as state:
            s = state["sessions"].get(session_id)
            if s is None:
                raise NotFound(f"no simulated checkout session {session_id}")
            if s["status"] == "open":
                s["status"] = "expired"
            return CheckoutSession.from_stripe(self._session_obj(s))

    def page(self, session_id: str) -> dict[str, Any]:
        """What the simulated checkout page shows."""
        with self._state() as state:
            s = state["sessions"].get(session_id)
            if s is None:
                raise NotFound(f"no simulated checkout session {session_id}")
            return {**s, "money": from_stripe_amount(s["amount"], s["currency"].upper())}

    def complete(self, session_id: str, method: str, outcome: str, saved: str = "succeeds") -> str:
        """The customer pressed Pay on the simulated page; returns the URL Stripe would send them to.

        A plan's first Checkout also saves the method on its Customer; `saved` is how that method
        answers the later off-session charges (SAVED_BEHAVIOURS)."""
        with self._state() as state:
            s = state["sessions"].get(session_id)
            if s is None:
                raise NotFound(f"no simulated checkout session {session_id}")
            if s["status"] != "open" or s["expires_at"] < self.clock.now().timestamp():
                raise Rejected("this checkout session is no longer open")
            if method not in s["methods"]:
                raise Rejected(f"{method} is not offered for this payment")
            if method == "card" and outcome == "fail":
                raise Rejected("Your card was declined. Try another card.")  # Checkout stays open
            if s.get("save"):
                if saved not in SAVED_BEHAVIOURS[method]:
                    raise Rejected(f"a saved {method} cannot be made to {saved}")
                pm = self._new_method(state, method, s["customer"], saved)
                s["payment_method"] = pm["id"]
            s["status"] = "complete"
            s["method"] = method
            if method == "card":
                s["payment_status"] = "paid"
            else:
                s["payment_status"] = "unpaid"
                s["settles_at"] = int((self.clock.now() + ACH_SETTLES_AFTER).timestamp())
                s["ach_outcome"] = outcome
            self._emit(state, "checkout.session.completed", self._session_obj(s))
            return s["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)

    def settle_due(self) -> int:
        """Bank payments whose time has come succeed or fail, as async_payment_* events."""
        settled = 0
        with self._state() as state:
            for pi in state["payment_intents"].values():
                if pi.get("settles_at") and pi["settles_at"] <= self.clock.now().timestamp():
                    del pi["settles_at"]
                    if pi.pop("ach_outcome") == "fails":
                        pi.update(status="requires_payment_method", last_payment_error=_RETURNED)
                        self._emit(state, "payment_intent.payment_failed", self._intent_obj(pi))
                    else:
                        pi.update(status="succeeded", amount_received=pi["amount"])
                        self._emit(state, "payment_intent.succeeded", self._intent_obj(pi))
                    settled += 1
            for s in state["sessions"].values():
                if s.get("settles_at") and s["settles_at"] <= self.clock.now().timestamp():
                    del s["settles_at"]
                    ok = s.get("ach_outcome") != "fail"
                    s["payment_status"] = "paid" if ok else "unpaid"
                    kind = "succeeded" if ok else "failed"
                    self._emit(
                        state, f"checkout.session.async_payment_{kind}", self._session_obj(s)
                    )
                    settled += 1
        return settled

    def refund(self, payment_intent: str, amount: Money | None, idempotency_key: str) -> str:
        with self._state() as state:
            known = state["idempotency"].get(idempotency_key)
            if known:
                return known
            s = next(
                (x for x in state["sessions"].values() if x["payment_intent"] == payment_intent),
                None,
            )
            paid = s is not None and s["payment_status"] == "paid"
            if s is None:  # an installment charged off-session
                s = state["payment_intents"].get(payment_intent)
                paid = s is not None and s["status"] == "succeeded"
            if s is None or not paid:
                raise Rejected("nothing was paid on this payment, so nothing can be refunded")
            refund_amount = (
                to_stripe_amount(amount) if amount else s["amount"] - s.get("refunded", 0)
            )
            s["refunded"] = s.get("refunded", 0) + refund_amount
            rid = f"re_sim_{secrets.token_hex(12)}"
            state["idempotency"][idempotency_key] = rid
            charge = {
                "id": f"ch_sim_{payment_intent[7:]}",
                "object": "charge",
                "amount": s["amount"],
                "amount_refunded": s["refunded"],
                "currency": s["currency"],
                "paid": True,
                "payment_intent": payment_intent,
                "refunded": s["refunded"] >= s["amount"],
                "status": "succeeded",
                "metadata": s["metadata"],
            }
            self._emit(state, "charge.refunded", charge)
            return rid

    def find_refund(self, payment_intent: str, keys: Sequence[str]) -> str | None:
        with self._state() as state:
            return next((state["idempotency"][k] for k in keys if k in state["idempotency"]), None)

    # --- Installment plans -------------------------------------------------------------------
    def _new_method(
        self, state: dict[str, Any], kind: str, customer: str, behaviour: str
    ) -> dict[str, Any]:
        now = self.clock.now()
        pm = {
            "id": f"pm_sim_{secrets.token_hex(12)}",
            "type": kind,
            "customer": customer,
            "behaviour": behaviour,
            "settle_days": OFF_SESSION_ACH_SETTLE_DAYS,
            "created": int(now.timestamp()),
            "exp_year": now.year + 3,
        }
        state["payment_methods"][pm["id"]] = pm
        return pm

    def _intent_obj(self, pi: dict[str, Any]) -> dict[str, Any]:
        """A payment_intent object in Stripe's shape."""
        return {
            "id": pi["id"],
            "object": "payment_intent",
            "amount": pi["amount"],
            "amount_received": pi.get("amount_received", 0),
            "currency": pi["currency"],
            "created": pi["created"],
            "customer": pi["customer"],
            "description": pi["description"],
            "last_payment_error": pi.get("last_payment_error"),
            "livemode": False,
            "metadata": pi["metadata"],
            "payment_method": pi["payment_method"],
            "payment_method_types": [pi["type"]],
            "status": pi["status"],
        }

    def find_or_create_customer(self, request: CustomerRequest) -> str:
        with self._state() as state:
            known = state["idempotency"].get(request.idempotency_key)
            if known:
                return str(known)
            cid = f"cus_sim_{secrets.token_hex(7)}"
            state["customers"][cid] = {
                "id": cid,
                "email": request.email,
                "name": request.name,
                "metadata": request.metadata,
            }
            state["idempotency"][request.idempotency_key] = cid
            return cid

    def saved_payment_method(self, session_id: str) -> SavedPaymentMethod | None:
        with self._state() as state:
            s = state["sessions"].get(session_id)
            if s is None:
                raise NotFound(f"no simulated checkout session {session_id}")
            if s["status"] != "complete" or not s.get("payment_method"):
                return None
            pm = state["payment_methods"][s["payment_method"]]
            return SavedPaymentMethod.from_stripe(self._method_obj(pm))

    def list_payment_methods(self, customer: str) -> list[SavedPaymentMethod]:
        with self._state() as state:
            return [
                SavedPaymentMethod.from_stripe(self._method_obj(pm))
                for pm in state["payment_methods"].values()
                if pm["customer"] == customer
            ]

    def set_payment_method_behaviour(
        self, payment_method: str, behaviour: str, *, settle_days: int | None = None
    ) -> None:
        """From now on the saved method answers charges so (a test's or the demo's choice): a card
        that starts declining, a bank account that fails `settle_days` days after each debit."""
        with self._state() as state:
            pm = state["payment_methods"].get(payment_method)
            if pm is None:
                raise NotFound(f"no simulated payment method {payment_method}")
            if behaviour not in SAVED_BEHAVIOURS[pm["type"]]:
                raise Rejected(f"a saved {pm['type']} cannot be made to {behaviour}")
            pm["behaviour"] = behaviour
            if settle_days is not None:
                pm["settle_days"] = settle_days

    def charge_off_session(self, charge: OffSessionCharge) -> ChargeResult:
        """Like Stripe: a repeated key answers as the first time and charges nothing more; a
        card succeeds or fails at once, a bank debit is processing until it settles."""
        with self._state() as state:
            known = state["idempotency"].get(charge.idempotency_key)
            if known:
                return ChargeResult.from_intent(self._intent_obj(state["payment_intents"][known]))
            pm = state["payment_methods"].get(charge.payment_method)
            if pm is None or pm["customer"] != charge.customer:
                # Stripe answers 400 and keeps no answer under the key for a refused request.
                raise Rejected(f"Stripe: No such PaymentMethod: '{charge.payment_method}'")
            if pm["type"] != charge.method_type:
                raise Rejected(f"Stripe: {charge.payment_method} is not a {charge.method_type}")
            now = self.clock.now()
            pi: dict[str, Any] = {
                "id": f"pi_sim_{secrets.token_hex(12)}",
                "amount": to_stripe_amount(charge.amount),
                "currency": charge.amount.currency.lower(),
                "created": int(now.timestamp()),
                "customer": charge.customer,
                "description": charge.description,
                "metadata": {**charge.metadata, CHARGE_KEY: charge.idempotency_key},
                "payment_method": pm["id"],
                "type": pm["type"],
            }
            behaviour = pm["behaviour"]
            if pm["type"] == "us_bank_account":
                pi.update(status="processing", ach_outcome=behaviour)
                pi["settles_at"] = int((now + timedelta(days=pm["settle_days"])).timestamp())
                event = "payment_intent.processing"
            elif behaviour == "succeeds":
                pi.update(status="succeeded", amount_received=pi["amount"])
                event = "payment_intent.succeeded"
            else:
                error = _DECLINED if behaviour == "declines" else _AUTHENTICATION
                pi.update(status="requires_payment_method", last_payment_error=error)
                event = "payment_intent.payment_failed"
            state["payment_intents"][pi["id"]] = pi
            state["idempotency"][charge.idempotency_key] = pi["id"]
            self._emit(state, event, self._intent_obj(pi))
            return ChargeResult.from_intent(self._intent_obj(pi))

    def retrieve_charge(self, payment_intent: str) -> ChargeResult:
        with self._state() as state:
            pi = state["payment_intents"].get(payment_intent)
            if pi is None:
                raise NotFound(f"no simulated payment intent {payment_intent}")
            return ChargeResult.from_intent(self._intent_obj(pi))

    def find_off_session_charge(self, customer: str, keys: Sequence[str]) -> ChargeResult | None:
        with self._state() as state:
            for key in keys:
                pi = state["payment_intents"].get(state["idempotency"].get(key, ""))
                if pi is None or pi["customer"] != customer:
                    continue
                result = ChargeResult.from_intent(self._intent_obj(pi))
                if result.outcome in ("succeeded", "processing"):
                    return result
            return None

    def settles_at(self, payment_intent: str) -> datetime | None:
        """When a simulated bank debit settles (None once settled), for the demo to show."""
        with self._state() as state:
            pi = state["payment_intents"].get(payment_intent) or {}
            at = pi.get("settles_at")
            return datetime.fromtimestamp(at, UTC) if at else None

    def capabilities(self) -> dict[str, str]:
        return {"card_payments": "active", "us_bank_account_ach_payments": "active"}
