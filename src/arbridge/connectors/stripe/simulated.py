"""A clearly labelled stand-in for Stripe, for the demo: no account, no network, no money.

It keeps its sessions in a JSON file, serves its "checkout page" through arbridge's own web app,
and reports outcomes the way Stripe does: as signed, Stripe-shaped events handed to the same
webhook ingestion code that real Stripe deliveries go through. Bank (ACH) payments settle a
little later, as they do for real (days there, seconds here).
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from arbridge.clock import Clock
from arbridge.connectors.stripe.gateway import (
    CheckoutRequest,
    CheckoutSession,
    from_stripe_amount,
    to_stripe_amount,
)
from arbridge.crypto import open_private_lock, write_private_text
from arbridge.errors import NotFound, Rejected
from arbridge.money import Money

Deliver = Callable[[bytes, str], None]
ACH_SETTLES_AFTER = timedelta(seconds=20)


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
        }

    def _emit(self, state: dict[str, Any], event_type: str, obj: dict[str, Any]) -> None:
        state["events"] += 1
        now = int(self.clock.now().timestamp())
        event = {
            "id": f"evt_sim_{secrets.token_hex(12)}",
            "object": "event",
            "api_version": "2026-10-28.endive",
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

    def complete(self, session_id: str, method: str, outcome: str) -> str:
        """The customer pressed Pay on the simulated page; returns the URL Stripe would send them to."""
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
            if s is None or s["payment_status"] != "paid":
                raise Rejected("nothing was paid on this payment, so nothing can be refunded")
            refund_amount = (
                to_stripe_amount(amount) if amount else s["amount"] - s.get("refunded", 0)
            )
            s["refunded"] = s.get("refunded", 0) + refund_amount
            rid = f"re_sim_{secrets.token_hex(12)}"
            state["idempotency"][idempotency_key] = rid
            charge = {
                "id": f"ch_sim_{s['payment_intent'][7:]}",
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

    def capabilities(self) -> dict[str, str]:
        return {"card_payments": "active", "us_bank_account_ach_payments": "active"}
