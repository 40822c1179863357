"""Installment plans through StripeGateway, Stripe faked at the HTTP boundary (`responses`): a
Customer per arbridge customer, the plan's first Checkout saving its payment method, and
off-session charges with every outcome. The fake keeps Stripe's idempotency: a repeated key gets
the first answer and creates nothing. Bodies are built from Stripe's own example objects
(../shared/reference/stripe/fixtures3.json)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from arbridge.connectors.stripe import (
    ChargeResult,
    CheckoutRequest,
    CustomerRequest,
    OffSessionCharge,
    SavedPaymentMethod,
    StripeGateway,
)
from arbridge.errors import RateLimited, Rejected, Transient
from arbridge.money import Money

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "stripe"
API = "http://stripe.test"
PLAN_META = {
    "arbridge_company": "1",
    "arbridge_invoices": "42",
    "arbridge_plan": "7",
    "arbridge_installment": "7:1",
}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def card(pm_id: str, customer: str | None) -> dict:
    return {**fixture("payment_method"), "id": pm_id, "customer": customer}


def bank_account(pm_id: str, customer: str | None) -> dict:
    """A us_bank_account PaymentMethod: the card example with Stripe's bank details instead."""
    pm = {k: v for k, v in fixture("payment_method").items() if k != "card"}
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


# How each saved method answers an off-session charge (Stripe's own test methods behave so).
DECLINES = {
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_authenticationRequired": (
        "authentication_required",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
    ),
}


class FakeStripe:
    """Customers, PaymentIntents and saving Checkout Sessions, with Stripe's idempotency: the
    first answer to a key is kept and replayed, whatever the body of the repeat."""

    def __init__(self, rsps: responses.RequestsMock) -> None:
        self.customers: dict[str, dict] = {}
        self.intents: dict[str, dict] = {}
        self.methods: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.answers: dict[str, tuple[int, dict]] = {}
        self.lose_next_answer = False
        rsps.add_callback(responses.POST, f"{API}/v1/customers", self.keyed(self.create_customer))
        rsps.add_callback(responses.GET, f"{API}/v1/customers", self.list_customers)
        rsps.add_callback(
            responses.POST, f"{API}/v1/payment_intents", self.keyed(self.create_intent)
        )
        rsps.add_callback(responses.GET, f"{API}/v1/payment_intents", self.list_intents)
        rsps.add_callback(
            responses.GET,
            responses.matchers.re.compile(rf"{API}/v1/payment_intents/pi_\w+"),
            self.get_intent,
        )
        rsps.add_callback(
            responses.GET,
            responses.matchers.re.compile(rf"{API}/v1/customers/cus_\w+/payment_methods.*"),
            self.customer_methods,
        )
        rsps.add_callback(
            responses.GET,
            responses.matchers.re.compile(rf"{API}/v1/checkout/sessions/cs_\w+.*"),
            self.get_session,
        )

    # --- the HTTP side ---
    def keyed(self, create):
        def reply(request):
            key = request.headers.get("Idempotency-Key")
            if key in self.answers:
                status, body = self.answers[key]
            else:
                status, body = create(parse_qs(request.body))
                if key:
                    self.answers[key] = (status, body)
            if self.lose_next_answer:  # done at Stripe, the answer lost on the way back
                self.lose_next_answer = False
                raise requests.ConnectionError("connection reset by peer")
            return status, {}, json.dumps(body)

        return reply

    @staticmethod
    def query(request) -> dict[str, list[str]]:
        return parse_qs(urlsplit(request.url).query)

    @staticmethod
    def listing(url: str, data: list[dict]) -> tuple[int, dict, str]:
        return 200, {}, json.dumps({"object": "list", "has_more": False, "url": url, "data": data})

    def create_customer(self, sent) -> tuple[int, dict]:
        cid = f"cus_{secrets.token_hex(7)}"
        self.customers[cid] = {
            **fixture("customer"),
            "id": cid,
            "email": sent.get("email", [None])[0],
            "name": sent["name"][0],
            "metadata": {k[9:-1]: v[0] for k, v in sent.items() if k.startswith("metadata[")},
        }
        return 200, self.customers[cid]

    def list_customers(self, request):
        email = self.query(request).get("email", [None])[0]
        found = [c for c in self.customers.values() if email is None or c["email"] == email]
        return self.listing("/v1/customers", found)

    def create_intent(self, sent) -> tuple[int, dict]:
        assert sent["confirm"] == ["true"] and sent["off_session"] == ["true"]
        pid = f"pi_{secrets.token_hex(12)}"
        method = self.methods[sent["payment_method"][0]]
        intent = {
            **fixture("payment_intent"),
            "id": pid,
            "amount": int(sent["amount"][0]),
            "currency": sent["currency"][0],
            "customer": sent["customer"][0],
            "payment_method": method["id"],
            "payment_method_types": sent["payment_method_types[0]"],
            "automatic_payment_methods": None,
            "last_payment_error": None,
            "next_action": None,
            "processing": None,
            "metadata": {k[9:-1]: v[0] for k, v in sent.items() if k.startswith("metadata[")},
            "status": "processing" if method["type"] == "us_bank_account" else "succeeded",
        }
        if method["id"] in DECLINES:
            code, decline, message = DECLINES[method["id"]]
            error = {
                "type": "card_error",
                "code": code,
                "decline_code": decline,
                "message": message,
                "doc_url": f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}",
            }
            intent.update(
                status="requires_payment_method",
                last_payment_error={**error, "payment_method": method},
            )
            self.intents[pid] = intent
            return 402, {"error": {**error, "payment_intent": intent, "payment_method": method}}
        self.intents[pid] = intent
        return 200, intent

    def list_intents(self, request):
        customer = self.query(request)["customer"][0]
        found = [i for i in self.intents.values() if i["customer"] == customer]
        return self.listing("/v1/payment_intents", found)

    def get_intent(self, request):
        return 200, {}, json.dumps(self.intents[urlsplit(request.url).path.rsplit("/", 1)[1]])

    def customer_methods(self, request):
        customer = urlsplit(request.url).path.split("/")[3]
        found = [m for m in self.methods.values() if m["customer"] == customer]
        return self.listing(f"/v1/customers/{customer}/payment_methods", found)

    def get_session(self, request):
        session = dict(self.sessions[urlsplit(request.url).path.rsplit("/", 1)[1]])
        if "payment_intent.payment_method" in self.query(request).get("expand[0]", []):
            intent = dict(self.intents[session["payment_intent"]])
            intent["payment_method"] = self.methods[intent["payment_method"]]
            session["payment_intent"] = intent
        return 200, {}, json.dumps(session)

    # --- what a test arranges ---
    def save(self, method: dict) -> str:
        self.methods[method["id"]] = method
        return method["id"]

    def completed_session(self, customer: str, method: dict) -> str:
        """A plan's first Checkout, paid: its PaymentIntent holds the method it saved."""
        self.save(method)
        pid = f"pi_{secrets.token_hex(12)}"
        self.intents[pid] = {
            **fixture("payment_intent"),
            "id": pid,
            "customer": customer,
            "payment_method": method["id"],
            "setup_future_usage": "off_session",
            "status": "succeeded",
        }
        sid = f"cs_test_{secrets.token_hex(8)}"
        self.sessions[sid] = {
            **fixture("checkout_session"),
            "id": sid,
            "customer": customer,
            "payment_intent": pid,
            "status": "complete",
            "payment_status": "paid",
        }
        return sid


@pytest.fixture
def stripe_fake():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeStripe(rsps), rsps


@pytest.fixture
def gw():
    gateway = StripeGateway("sk_test_x", account="acct_1Nv0FGQ9RKHgCVdK", api_base=API)
    # Without the library's own retries, a lost answer comes back to us as Transient.
    gateway.client._requestor._options.max_network_retries = 0
    return gateway


def ana(email: str | None = "ana@harbor.example") -> CustomerRequest:
    return CustomerRequest(company="1", customer="301", name="Harbor Foods", email=email)


def installment(customer: str, pm: str, key: str, method_type: str = "card") -> OffSessionCharge:
    return OffSessionCharge(
        customer=customer,
        payment_method=pm,
        method_type=method_type,
        amount=Money(Decimal("308.65"), "USD"),
        idempotency_key=key,
        metadata={**PLAN_META, "arbridge_installment": "7:2"},
        description="Acme Supply Co.: installment 2 of 4 on INV-1001",
    )


def sent_form(call) -> dict[str, list[str]]:
    return parse_qs(call.request.body)


# --- Customers ---------------------------------------------------------------------------------
def test_a_customer_is_created_once_with_our_ids_email_and_name(stripe_fake, gw):
    fake, rsps = stripe_fake
    cid = gw.find_or_create_customer(ana())
    created = next(c for c in rsps.calls if c.request.method == "POST")
    assert created.request.headers["Idempotency-Key"] == "stripe_customer:1:301"
    assert created.request.headers["Stripe-Account"] == "acct_1Nv0FGQ9RKHgCVdK"
    assert sent_form(created) == {
        "name": ["Harbor Foods"],
        "email": ["ana@harbor.example"],
        "metadata[arbridge_company]": ["1"],
        "metadata[arbridge_customer]": ["301"],
    }
    # Asked again (a later plan, or a retry): the one made is found, nothing new is made.
    assert gw.find_or_create_customer(ana()) == cid
    assert list(fake.customers) == [cid]


def test_another_customer_with_the_same_email_is_not_taken_for_ours(stripe_fake, gw):
    fake, _ = stripe_fake
    other = gw.find_or_create_customer(
        CustomerRequest(
            company="2", customer="301", name="Harbor Foods", email="ana@harbor.example"
        )
    )
    mine = gw.find_or_create_customer(ana())
    assert mine != other and len(fake.customers) == 2


def test_a_customer_without_email_is_made_once_by_its_key(stripe_fake, gw):
    fake, rsps = stripe_fake
    first = gw.find_or_create_customer(ana(email=None))
    assert gw.find_or_create_customer(ana(email=None)) == first
    assert len(fake.customers) == 1
    assert [c.request.headers["Idempotency-Key"] for c in rsps.calls] == [
        "stripe_customer:1:301",
        "stripe_customer:1:301",
    ]
    assert "email" not in sent_form(rsps.calls[0])


# --- The plan's first payment: Checkout saving the method -----------------------------------------
def saving_request(methods=("card", "us_bank_account"), **overrides) -> CheckoutRequest:
    fields = {
        "amount": Money(Decimal("308.66"), "USD"),
        "description": "Acme Supply Co.: deposit on INV-1001",
        "methods": list(methods),
        "success_url": "http://127.0.0.1:5000/pay/tok/return?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://127.0.0.1:5000/pay/tok",
        "expires_at": datetime(2026, 11, 24, 16, tzinfo=UTC),
        "idempotency_key": "checkout:plan:7:1",
        "metadata": PLAN_META,
        "customer_email": "ana@harbor.example",
        "customer": "cus_QXg1o8vcGmoR32",
        "save_payment_method": True,
        **overrides,
    }
    return CheckoutRequest(**fields)


@responses.activate
def test_the_first_payment_checkout_saves_the_method_for_off_session_charges(gw):
    responses.post(
        f"{API}/v1/checkout/sessions",
        json={
            **fixture("checkout_session"),
            "customer": "cus_QXg1o8vcGmoR32",
            "amount_total": 30866,
            "currency": "usd",
        },
    )
    session = gw.create_checkout_session(saving_request())
    assert session.customer == "cus_QXg1o8vcGmoR32"
    call = responses.calls[0]
    sent = sent_form(call)
    assert sent["customer"] == ["cus_QXg1o8vcGmoR32"]
    assert "customer_email" not in sent  # Stripe refuses both; the Customer has the email
    assert sent["payment_intent_data[setup_future_usage]"] == ["off_session"]
    assert sent["payment_method_types[0]"] == ["card"]
    assert sent["payment_method_types[1]"] == ["us_bank_account"]
    assert sent["line_items[0][price_data][unit_amount]"] == ["30866"]
    assert sent["payment_intent_data[metadata][arbridge_plan]"] == ["7"]
    assert sent["payment_intent_data[metadata][arbridge_installment]"] == ["7:1"]
    assert sent["metadata[arbridge_installment]"] == ["7:1"]
    assert call.request.headers["Idempotency-Key"] == "checkout:plan:7:1"


@responses.activate
def test_an_ordinary_checkout_saves_nothing(gw):
    responses.post(f"{API}/v1/checkout/sessions", json=fixture("checkout_session"))
    gw.create_checkout_session(saving_request(customer=None, save_payment_method=False))
    sent = sent_form(responses.calls[0])
    assert "payment_intent_data[setup_future_usage]" not in sent and "customer" not in sent
    assert sent["customer_email"] == ["ana@harbor.example"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"customer": None},
        {"methods": ["card", "link"]},
        {"metadata": {"arbridge_company": "1", "arbridge_invoices": "42"}},
    ],
)
def test_a_saving_checkout_needs_a_customer_savable_methods_and_names_its_installment(overrides):
    with pytest.raises(ValueError):
        saving_request(**overrides)


def test_the_saved_card_is_read_from_the_completed_session(stripe_fake, gw):
    fake, rsps = stripe_fake
    sid = fake.completed_session("cus_A", card("pm_card_visa", "cus_A"))
    saved = gw.saved_payment_method(sid)
    assert saved == SavedPaymentMethod(
        id="pm_card_visa",
        type="card",
        customer="cus_A",
        brand="visa",
        last4="4242",
        exp_month=8,
        exp_year=2030,
    )
    assert fake.query(rsps.calls[0].request)["expand[0]"] == ["payment_intent.payment_method"]


def test_the_saved_bank_account_is_read_and_listed_on_its_customer(stripe_fake, gw):
    fake, _ = stripe_fake
    sid = fake.completed_session("cus_B", bank_account("pm_usBankAccount", "cus_B"))
    fake.save(card("pm_card_other", "cus_other"))
    saved = gw.saved_payment_method(sid)
    assert (saved.type, saved.brand, saved.last4, saved.exp_month) == (
        "us_bank_account",
        "STRIPE TEST BANK",
        "6789",
        None,
    )
    assert gw.list_payment_methods("cus_B") == [saved]


def test_an_unfinished_session_has_no_saved_method(stripe_fake, gw):
    fake, _ = stripe_fake
    sid = fake.completed_session("cus_A", card("pm_card_visa", "cus_A"))
    fake.sessions[sid].update(status="open", payment_status="unpaid")
    assert gw.saved_payment_method(sid) is None


# --- Off-session charges -----------------------------------------------------------------------
def test_an_installment_charged_off_session_succeeds_and_says_what_was_sent(stripe_fake, gw):
    fake, rsps = stripe_fake
    fake.save(card("pm_card_visa", "cus_A"))
    result = gw.charge_off_session(installment("cus_A", "pm_card_visa", "plan:7:2:try:1"))
    assert result.outcome == "succeeded" and result.payment_intent in fake.intents
    call = rsps.calls[0]
    assert call.request.headers["Idempotency-Key"] == "plan:7:2:try:1"
    assert sent_form(call) == {
        "amount": ["30865"],
        "currency": ["usd"],
        "customer": ["cus_A"],
        "payment_method": ["pm_card_visa"],
        "payment_method_types[0]": ["card"],
        "confirm": ["true"],
        "off_session": ["true"],
        "description": ["Acme Supply Co.: installment 2 of 4 on INV-1001"],
        "metadata[arbridge_company]": ["1"],
        "metadata[arbridge_invoices]": ["42"],
        "metadata[arbridge_plan]": ["7"],
        "metadata[arbridge_installment]": ["7:2"],
        "metadata[arbridge_charge_key]": ["plan:7:2:try:1"],
    }


def test_an_installment_charged_twice_with_one_key_is_one_payment(stripe_fake, gw):
    fake, _ = stripe_fake
    fake.save(card("pm_card_visa", "cus_A"))
    first = gw.charge_off_session(installment("cus_A", "pm_card_visa", "plan:7:2:try:1"))
    again = gw.charge_off_session(installment("cus_A", "pm_card_visa", "plan:7:2:try:1"))
    assert again == first and len(fake.intents) == 1


def test_a_charge_whose_answer_was_lost_is_transient_and_its_retry_charges_nothing_more(
    stripe_fake, gw
):
    fake, _ = stripe_fake
    fake.save(card("pm_card_visa", "cus_A"))
    fake.lose_next_answer = True
    with pytest.raises(Transient):
        gw.charge_off_session(installment("cus_A", "pm_card_visa", "plan:7:2:try:1"))
    assert len(fake.intents) == 1  # Stripe did charge
    retried = gw.charge_off_session(installment("cus_A", "pm_card_visa", "plan:7:2:try:1"))
    assert retried.outcome == "succeeded" and list(fake.intents) == [retried.payment_intent]


def test_the_librarys_own_retry_of_a_lost_answer_sends_the_same_key_and_charges_once(
    stripe_fake,
):
    fake, rsps = stripe_fake
    gw = StripeGateway("sk_test_x", api_base=API)  # as installed: Stripe's client retries twice
    fake.save(card("pm_card_visa", "cus_A"))
    fake.lose_next_answer = True
    result = gw.charge_off_session(installment("cus_A", "pm_card_visa", "plan:7:2:try:1"))
    assert [c.request.headers["Idempotency-Key"] for c in rsps.calls] == ["plan:7:2:try:1"] * 2
    assert result.outcome == "succeeded" and list(fake.intents) == [result.payment_intent]


def test_a_charge_lost_longer_than_stripe_keeps_keys_is_found_by_its_key(stripe_fake, gw):
    fake, _ = stripe_fake
    fake.save(card("pm_card_visa", "cus_A"))
    fake.save(card("pm_card_chargeDeclinedInsufficientFunds", "cus_A"))
    failed = gw.charge_off_session(
        installment("cus_A", "pm_card_chargeDeclinedInsufficientFunds", "plan:7:2:try:1")
    )
    paid = gw.charge_off_session(installment("cus_A", "pm_card_visa", "plan:7:2:try:2"))
    fake.answers.clear()  # 24 hours on: Stripe has forgotten the keys
    keys = ["plan:7:2:try:1", "plan:7:2:try:2"]
    assert gw.find_off_session_charge("cus_A", keys) == paid
    assert gw.find_off_session_charge("cus_A", keys[:1]) is None  # the declined one took nothing
    assert failed.outcome == "declined"
    assert gw.find_off_session_charge("cus_A", ["plan:7:3:try:1"]) is None


def test_a_declined_card_is_an_outcome_with_its_decline_code(stripe_fake, gw):
    fake, _ = stripe_fake
    fake.save(card("pm_card_chargeDeclinedInsufficientFunds", "cus_A"))
    result = gw.charge_off_session(
        installment("cus_A", "pm_card_chargeDeclinedInsufficientFunds", "k:1")
    )
    assert result == ChargeResult(
        "declined",
        next(iter(fake.intents)),
        code="card_declined",
        decline_code="insufficient_funds",
        message="Your card has insufficient funds.",
    )
    # Replayed from the key, the decline is the same decline and no second attempt is made.
    assert (
        gw.charge_off_session(
            installment("cus_A", "pm_card_chargeDeclinedInsufficientFunds", "k:1")
        )
        == result
    )
    assert len(fake.intents) == 1


def test_a_card_that_needs_its_holder_asks_for_action(stripe_fake, gw):
    fake, _ = stripe_fake
    fake.save(card("pm_card_authenticationRequired", "cus_A"))
    result = gw.charge_off_session(installment("cus_A", "pm_card_authenticationRequired", "k:1"))
    assert (result.outcome, result.code) == ("requires_action", "authentication_required")
    assert result.payment_intent in fake.intents


def test_a_bank_debit_is_processing_and_its_outcome_is_read_later(stripe_fake, gw):
    fake, rsps = stripe_fake
    fake.save(bank_account("pm_usBankAccount", "cus_B"))
    result = gw.charge_off_session(
        installment("cus_B", "pm_usBankAccount", "k:1", method_type="us_bank_account")
    )
    assert result.outcome == "processing"
    assert sent_form(rsps.calls[0])["payment_method_types[0]"] == ["us_bank_account"]
    # Four days on, the bank returns it (R01): the PaymentIntent wants a new payment method.
    fake.intents[result.payment_intent].update(
        status="requires_payment_method",
        last_payment_error={
            "type": "invalid_request_error",
            "code": "insufficient_funds",
            "message": "The customer's account has insufficient funds to cover this payment.",
        },
    )
    later = gw.retrieve_charge(result.payment_intent)
    assert (later.outcome, later.code) == ("declined", "insufficient_funds")
    fake.intents[result.payment_intent].update(status="succeeded", last_payment_error=None)
    assert gw.retrieve_charge(result.payment_intent).outcome == "succeeded"


def test_an_intent_waiting_for_its_customer_requires_action():
    intent = {
        **fixture("payment_intent"),
        "status": "requires_action",
        "last_payment_error": None,
        "next_action": {"type": "use_stripe_sdk", "use_stripe_sdk": {}},
    }
    result = ChargeResult.from_intent(intent)
    assert (result.outcome, result.code) == ("requires_action", "authentication_required")


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            429,
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": "rate_limit",
                    "message": "Too many requests",
                }
            },
            RateLimited,
        ),
        (503, {"error": {"type": "api_error", "message": "Service unavailable"}}, Transient),
        (
            400,
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": "resource_missing",
                    "param": "payment_method",
                    "message": "No such PaymentMethod: 'pm_gone'",
                }
            },
            Rejected,
        ),
    ],
)
@responses.activate
def test_an_off_session_charge_that_stripe_could_not_take_is_an_error_not_an_outcome(
    gw, status, body, error
):
    responses.post(f"{API}/v1/payment_intents", json=body, status=status)
    with pytest.raises(error):
        gw.charge_off_session(installment("cus_A", "pm_gone", "k:1"))


@responses.activate
def test_a_dropped_connection_while_charging_is_transient(gw):
    responses.post(
        f"{API}/v1/payment_intents", body=requests.ConnectionError("connection reset by peer")
    )
    with pytest.raises(Transient):
        gw.charge_off_session(installment("cus_A", "pm_card_visa", "k:1"))
