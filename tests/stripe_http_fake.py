"""Stripe faked at the HTTP boundary (`responses`), for tests that run arbridge's real
StripeGateway against a business's own Stripe account: the account and its webhook endpoint,
Customers, Checkout Sessions (saving the payment method with `setup_future_usage`), off-session
PaymentIntents, and the signed events Stripe would send about each of them.

It keeps Stripe's idempotency (a repeated Idempotency-Key gets the first answer and makes
nothing new) and behaves like Stripe's test payment methods: `pm_card_visa` pays,
`pm_card_chargeDeclinedInsufficientFunds` is declined, `pm_card_authenticationRequired` needs
its holder, `pm_usBankAccount` is a bank debit that stays `processing` until the test settles
it (`settle`), days later by the test's clock. A test may also script the next charges'
outcomes (`next_outcomes`). Every object is built from Stripe's own example objects
(tests/fixtures/stripe, from stripe/openapi's fixtures3.json); every event it would send is kept
in `outbox` until the test delivers it, signed with the endpoint's secret, to the app's real
`/webhooks/stripe`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses

from arbridge.clock import Clock

API = "http://stripe.test"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stripe"
ACCOUNT = "acct_1PgafTB7WZ01zgkW"
WEBHOOK_SECRET = "whsec_plan_year_4f0c3b2a1d9e8f7a6b5c4d3e"

KEPT = 24 * 3600  # seconds Stripe keeps an idempotency key
SUCCEED, DECLINE, AUTHENTICATE, PROCESS = "succeed", "decline", "authenticate", "process"
# Stripe's errors for its test cards, as its 402 answers carry them.
ERRORS = {
    DECLINE: {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": "Your card has insufficient funds.",
        "doc_url": "https://docs.stripe.com/error-codes/card-declined",
    },
    AUTHENTICATE: {
        "type": "card_error",
        "code": "authentication_required",
        "decline_code": "authentication_required",
        "message": "Your card was declined. This transaction requires authentication.",
        "doc_url": "https://docs.stripe.com/error-codes/authentication-required",
    },
}
# A bank debit returned by the customer's bank (R01), as the PaymentIntent's last_payment_error.
ACH_RETURNED = {
    "type": "card_error",
    "code": "insufficient_funds",
    "message": "The customer's account has insufficient funds to cover this payment.",
}
BY_METHOD = {
    "pm_card_visa": SUCCEED,
    "pm_card_chargeDeclinedInsufficientFunds": DECLINE,
    "pm_card_authenticationRequired": AUTHENTICATE,
    "pm_usBankAccount": PROCESS,
}


class WorkerKilled(BaseException):
    """The worker process dying mid-request: not an error any code of ours catches."""


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def payment_method(pm_id: str, customer: str | None) -> dict[str, Any]:
    """One of Stripe's test payment methods (`pm_card_visa`, ...), attached to `customer`."""
    pm = fixture("payment_method")
    if pm_id != "pm_usBankAccount":
        return {**pm, "id": pm_id, "customer": customer}
    pm = {k: v for k, v in pm.items() if k != "card"}
    return {
        **pm,
        "id": pm_id,
        "customer": customer,
        "type": "us_bank_account",
        "us_bank_account": {
            "account_holder_type": "individual",
            "account_type": "checking",
            "bank_name": "STRIPE TEST BANK",
            "financial_connections_account": None,
            "fingerprint": "FFDMA0xfhBjWSZLu",
            "last4": "6789",
            "networks": {"preferred": "ach", "supported": ["ach"]},
            "routing_number": "110000000",
            "status_details": {},
        },
    }


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """Stripe's `Stripe-Signature` header: t=..., v1=HMAC-SHA256(secret, "t.body")."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _form(body: str | bytes | None) -> dict[str, list[str]]:
    if isinstance(body, bytes):
        body = body.decode()
    return parse_qs(body or "")


def _sub(sent: dict[str, list[str]], prefix: str) -> dict[str, str]:
    """Form fields `prefix[name]` as {name: value} (Stripe's encoding of a hash)."""
    return {
        k[len(prefix) + 1 : -1]: v[0]
        for k, v in sent.items()
        if k.startswith(prefix + "[") and k.count("[") == prefix.count("[") + 1
    }


def _listed(sent: dict[str, list[str]], name: str) -> list[str]:
    found = sorted(
        (int(m.group(1)), v[0])
        for k, v in sent.items()
        if (m := re.fullmatch(rf"{name}\[(\d+)\]", k))
    )
    return [v for _, v in found]


class StripeHTTPFake:
    def __init__(self, rsps: responses.RequestsMock, clock: Clock, api: str = API) -> None:
        self.clock = clock
        self.api = api
        self.customers: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.methods: dict[str, dict[str, Any]] = {}
        self.behaviour: dict[str, str] = {}  # how each saved method answers a charge
        self._session_intent_data: dict[str, dict[str, Any]] = {}
        # Idempotency keys and their first answers, with when they were first seen: Stripe
        # forgets a key after 24 hours, and a repeat after that is a new request.
        self.answers: dict[str, tuple[int, dict[str, Any], int]] = {}
        self.outbox: list[dict[str, Any]] = []  # events not delivered yet
        self.delivered: list[dict[str, Any]] = []
        # Outcomes for the next off-session charges, first first; otherwise by the method.
        self.next_outcomes: list[str] = []
        # What becomes of the next charge's answer: None (it arrives), "lost" (the connection
        # drops after Stripe made the PaymentIntent, on every try) or "killed" (the worker
        # dies while waiting for it).
        self.after_next_charge: str | None = None
        self.lost_answers = 0
        self.endpoints: list[dict[str, Any]] = []
        self._n = 0
        self.calls: list[tuple[str, str, str | None]] = []  # (method, path, idempotency key)
        a = self.api
        routes: list[tuple[str, Any, Callable[[Any], tuple[int, dict, str]]]] = [
            (responses.GET, f"{a}/v1/account", self._account),
            (responses.GET, f"{a}/v1/webhook_endpoints", self._list_endpoints),
            (responses.POST, f"{a}/v1/webhook_endpoints", self._keyed(self._create_endpoint)),
            (responses.GET, f"{a}/v1/customers", self._list_customers),
            (responses.POST, f"{a}/v1/customers", self._keyed(self._create_customer)),
            (
                responses.GET,
                re.compile(rf"{re.escape(a)}/v1/customers/cus_\w+/payment_methods.*"),
                self._customer_methods,
            ),
            (responses.POST, f"{a}/v1/checkout/sessions", self._keyed(self._create_session)),
            (
                responses.POST,
                re.compile(rf"{re.escape(a)}/v1/checkout/sessions/cs_\w+/expire"),
                self._keyed(self._expire_session),
            ),
            (
                responses.GET,
                re.compile(rf"{re.escape(a)}/v1/checkout/sessions/cs_\w+.*"),
                self._get_session,
            ),
            (responses.POST, f"{a}/v1/payment_intents", self._keyed(self._create_intent)),
            (
                responses.GET,
                re.compile(rf"{re.escape(a)}/v1/payment_intents\?.*"),
                self._list_intents,
            ),
            (
                responses.GET,
                re.compile(rf"{re.escape(a)}/v1/payment_intents/pi_\w+.*"),
                self._get_intent,
            ),
            (
                responses.GET,
                re.compile(rf"{re.escape(a)}/v1/payment_methods/pm_\w+.*"),
                self._get_method,
            ),
        ]
        for method, url, callback in routes:
            rsps.add_callback(method, url, callback=self._logged(callback))

    # --- plumbing ------------------------------------------------------------------------
    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n:04d}PlanYear{self._n * 7919 % 100000:05d}"

    def _now(self) -> int:
        return int(self.clock.now().timestamp())

    def _logged(self, callback):
        def reply(request):
            self.calls.append(
                (request.method, urlsplit(request.url).path, request.headers.get("Idempotency-Key"))
            )
            return callback(request)

        return reply

    def _keyed(self, create):
        """Stripe's idempotency: a key seen before gets the first answer, nothing new is made."""

        def reply(request):
            key = request.headers.get("Idempotency-Key")
            if key and key in self.answers and self.answers[key][2] > self._now() - KEPT:
                status, body, _ = self.answers[key]
            else:
                status, body = create(request)
                if key:
                    self.answers[key] = (status, body, self._now())
            if request.url.endswith("/v1/payment_intents") and self.after_next_charge:
                if self.after_next_charge == "killed":
                    self.after_next_charge = None
                    raise WorkerKilled("the worker died waiting for Stripe's answer")
                # Done at Stripe; the answer lost on the way back, on every try of this call
                # (the gateway's client tries three times: once and two retries).
                self.lost_answers += 1
                if self.lost_answers >= 3:
                    self.after_next_charge, self.lost_answers = None, 0
                raise requests.ConnectionError("connection reset by peer")
            return status, {}, json.dumps(body)

        return reply

    @staticmethod
    def _query(request) -> dict[str, list[str]]:
        return parse_qs(urlsplit(request.url).query)

    @staticmethod
    def _listing(url: str, data: list[dict]) -> tuple[int, dict, str]:
        return 200, {}, json.dumps({"object": "list", "has_more": False, "url": url, "data": data})

    def _event(self, event_type: str, obj: dict[str, Any]) -> None:
        self.outbox.append(
            {
                **fixture("event"),
                "id": self._id("evt"),
                "api_version": "2026-10-28.endive",
                "created": self._now(),
                "type": event_type,
                "data": {"object": json.loads(json.dumps(obj))},
            }
        )

    # --- the account and its webhook endpoint ---------------------------------------------
    def _account(self, request):
        return (
            200,
            {},
            json.dumps(
                {
                    **fixture("account"),
                    "id": ACCOUNT,
                    "charges_enabled": True,
                    "capabilities": {
                        "card_payments": "active",
                        "us_bank_account_ach_payments": "active",
                    },
                }
            ),
        )

    def _list_endpoints(self, request):
        return self._listing(
            "/v1/webhook_endpoints", [dict(e, secret=None) for e in self.endpoints]
        )

    def _create_endpoint(self, request):
        sent = _form(request.body)
        endpoint = {
            **fixture("webhook_endpoint"),
            "id": self._id("we"),
            "url": sent["url"][0],
            "enabled_events": _listed(sent, "enabled_events"),
            "metadata": _sub(sent, "metadata"),
            "secret": WEBHOOK_SECRET,
        }
        self.endpoints.append(endpoint)
        return 200, endpoint

    # --- Customers ---------------------------------------------------------------------------
    def _create_customer(self, request):
        sent = _form(request.body)
        cid = self._id("cus")
        self.customers[cid] = {
            **fixture("customer"),
            "id": cid,
            "created": self._now(),
            "email": sent.get("email", [None])[0],
            "name": sent["name"][0],
            "metadata": _sub(sent, "metadata"),
        }
        return 200, self.customers[cid]

    def _list_customers(self, request):
        email = self._query(request).get("email", [None])[0]
        found = [c for c in self.customers.values() if email is None or c["email"] == email]
        return self._listing("/v1/customers", found)

    def _customer_methods(self, request):
        customer = urlsplit(request.url).path.split("/")[3]
        found = [m for m in self.methods.values() if m["customer"] == customer]
        return self._listing(f"/v1/customers/{customer}/payment_methods", found)

    def _get_method(self, request):
        return 200, {}, json.dumps(self.methods[urlsplit(request.url).path.rsplit("/", 1)[1]])

    # --- Checkout ----------------------------------------------------------------------------
    def _create_session(self, request):
        sent = _form(request.body)
        sid = self._id("cs_test")
        intent_data = _sub(sent, "payment_intent_data")
        session = {
            **fixture("checkout_session"),
            "id": sid,
            "created": self._now(),
            "status": "open",
            "payment_status": "unpaid",
            "payment_intent": None,  # made when the customer pays
            "customer": sent.get("customer", [None])[0],
            "customer_email": sent.get("customer_email", [None])[0],
            "amount_subtotal": int(sent["line_items[0][price_data][unit_amount]"][0]),
            "amount_total": int(sent["line_items[0][price_data][unit_amount]"][0]),
            "currency": sent["line_items[0][price_data][currency]"][0],
            "expires_at": int(sent["expires_at"][0]),
            "metadata": _sub(sent, "metadata"),
            "payment_method_types": _listed(sent, "payment_method_types"),
            "success_url": sent["success_url"][0].replace("{CHECKOUT_SESSION_ID}", sid),
            "cancel_url": sent["cancel_url"][0],
            "url": f"https://checkout.stripe.com/c/pay/{sid}",
        }
        # Kept aside: what the session's PaymentIntent will be made with.
        self.sessions[sid] = session
        self._session_intent_data[sid] = {
            "metadata": _sub(sent, "payment_intent_data[metadata]"),
            "setup_future_usage": intent_data.get("setup_future_usage"),
            "description": intent_data.get("description"),
        }
        return 200, session

    def session_setup(self, sid: str) -> dict[str, Any]:
        """What the session asked of its PaymentIntent (metadata, setup_future_usage)."""
        return self._session_intent_data[sid]

    def _expire_session(self, request):
        sid = urlsplit(request.url).path.split("/")[4]
        session = self.sessions[sid]
        if session["status"] != "open":
            error = {
                "type": "invalid_request_error",
                "message": f'Only Checkout Sessions with a status in ["open"] can be expired. '
                f'This Checkout Session has a status of "{session["status"]}".',
            }
            return 400, {"error": error}
        session["status"] = "expired"
        self._event("checkout.session.expired", session)
        return 200, session

    def _get_session(self, request):
        sid = urlsplit(request.url).path.rsplit("/", 1)[1]
        session = dict(self.sessions[sid])
        expand = self._query(request).get("expand[0]", [])
        if "payment_intent.payment_method" in expand and session["payment_intent"]:
            intent = dict(self.intents[session["payment_intent"]])
            intent["payment_method"] = self.methods.get(intent["payment_method"])
            session["payment_intent"] = intent
        return 200, {}, json.dumps(session)

    def pay_session(self, sid: str, pm_id: str = "pm_card_visa") -> dict[str, Any]:
        """The customer pays an open session with one of Stripe's test methods; the method is
        saved to the session's Customer when the session asked for it. Queues the events
        Stripe sends: checkout.session.completed and the PaymentIntent's own."""
        session = self.sessions[sid]
        assert session["status"] == "open", f"session {sid} is {session['status']}"
        assert session["expires_at"] > self._now(), f"session {sid} has expired"
        setup = self._session_intent_data[sid]
        customer = session["customer"]
        # Stripe makes a new PaymentMethod from the test method's alias, ours to keep.
        method = payment_method(pm_id, customer if setup["setup_future_usage"] else None)
        method["id"] = self._id("pm")
        self.methods[method["id"]] = method
        self.behaviour[method["id"]] = BY_METHOD[pm_id]
        bank = method["type"] == "us_bank_account"
        intent = self._intent(
            amount=session["amount_total"],
            currency=session["currency"],
            customer=customer,
            method=method,
            metadata=setup["metadata"],
            status="processing" if bank else "succeeded",
            setup_future_usage=setup["setup_future_usage"],
            description=setup["description"],
        )
        session.update(
            status="complete",
            payment_status="unpaid" if bank else "paid",
            payment_intent=intent["id"],
            payment_method_types=[method["type"]] if bank else session["payment_method_types"],
        )
        self._event("checkout.session.completed", session)
        self._event("payment_intent.processing" if bank else "payment_intent.succeeded", intent)
        return session

    # --- PaymentIntents ----------------------------------------------------------------------
    def _intent(self, **fields: Any) -> dict[str, Any]:
        method = fields.pop("method")
        pid = self._id("pi")
        intent = {
            **fixture("payment_intent"),
            "id": pid,
            "created": self._now(),
            "payment_method": method["id"],
            "payment_method_types": [method["type"]],
            "automatic_payment_methods": None,
            "canceled_at": None,
            "client_secret": f"{pid}_secret_planyear",
            "last_payment_error": None,
            "next_action": None,
            "processing": None,
            "transfer_data": None,
            **fields,
        }
        intent["amount_received"] = intent["amount"] if intent["status"] == "succeeded" else 0
        self.intents[pid] = intent
        return intent

    def _create_intent(self, request):
        sent = _form(request.body)
        assert sent["confirm"] == ["true"] and sent["off_session"] == ["true"], sent
        method = self.methods[sent["payment_method"][0]]
        assert method["customer"] == sent["customer"][0], "the method is not saved on them"
        outcome = self.next_outcomes.pop(0) if self.next_outcomes else self.behaviour[method["id"]]
        intent = self._intent(
            amount=int(sent["amount"][0]),
            currency=sent["currency"][0],
            customer=sent["customer"][0],
            method=method,
            metadata=_sub(sent, "metadata"),
            description=sent.get("description", [None])[0],
            status={SUCCEED: "succeeded", PROCESS: "processing"}.get(
                outcome, "requires_payment_method"
            ),
        )
        if outcome in ERRORS:
            error = ERRORS[outcome]
            intent["last_payment_error"] = {**error, "payment_method": method}
            self._event("payment_intent.payment_failed", intent)
            return 402, {"error": {**error, "payment_intent": intent, "payment_method": method}}
        self._event(
            "payment_intent.processing" if outcome == PROCESS else "payment_intent.succeeded",
            intent,
        )
        return 200, intent

    def settle(self, pid: str, *, succeeded: bool) -> None:
        """A bank debit clears or is returned: the PaymentIntent moves on, and Stripe says so."""
        intent = self.intents[pid]
        assert intent["status"] == "processing", intent["status"]
        session = next((c for c in self.sessions.values() if c["payment_intent"] == pid), None)
        if succeeded:
            intent.update(status="succeeded", amount_received=intent["amount"])
            self._event("payment_intent.succeeded", intent)
        else:
            intent.update(status="requires_payment_method", last_payment_error=ACH_RETURNED)
            self._event("payment_intent.payment_failed", intent)
        if session is not None:  # a Checkout's debit: the session says so too
            session["payment_status"] = "paid" if succeeded else "unpaid"
            outcome = "succeeded" if succeeded else "failed"
            self._event(f"checkout.session.async_payment_{outcome}", session)

    def _list_intents(self, request):
        customer = self._query(request).get("customer", [None])[0]
        found = sorted(
            (i for i in self.intents.values() if customer in (None, i["customer"])),
            key=lambda i: i["created"],
            reverse=True,
        )
        return self._listing("/v1/payment_intents", found)

    def _get_intent(self, request):
        return 200, {}, json.dumps(self.intents[urlsplit(request.url).path.rsplit("/", 1)[1]])

    # --- what the tests read -----------------------------------------------------------------
    def charges(self, succeeded_only: bool = True) -> list[dict[str, Any]]:
        """The PaymentIntents made, oldest first (those that took money, unless asked)."""
        made = sorted(self.intents.values(), key=lambda i: (i["created"], i["id"]))
        return [i for i in made if not succeeded_only or i["status"] == "succeeded"]

    def deliver(self, post: Callable[..., Any], secret: str = WEBHOOK_SECRET) -> list[int]:
        """Send every queued event to the app's webhook route, signed as Stripe signs them;
        returns the status codes."""
        codes = []
        while self.outbox:
            event = self.outbox.pop(0)
            body = json.dumps(event).encode()
            response = post(
                "/webhooks/stripe",
                data=body,
                headers={
                    "Stripe-Signature": sign(body, secret, self._now()),
                    "Content-Type": "application/json",
                },
            )
            codes.append(response.status_code)
            self.delivered.append(event)
        return codes


def created_at(obj: dict[str, Any]) -> datetime:
    """When Stripe made the object (its `created`), as an aware UTC datetime."""
    return datetime.fromtimestamp(obj["created"], UTC)
