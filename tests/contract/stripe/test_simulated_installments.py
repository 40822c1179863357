"""The simulated gateway's installment calls: the same answers as StripeGateway's (Customer,
saved method, off-session charges), with outcomes a test or the demo chooses, bank debits that
settle by the injected clock, and Stripe-shaped signed events."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from arbridge.clock import FixedClock
from arbridge.connectors.stripe import (
    ChargeResult,
    CheckoutRequest,
    CustomerRequest,
    OffSessionCharge,
    PaymentGateway,
    StripeGateway,
)
from arbridge.connectors.stripe.simulated import SimulatedStripe, sign
from arbridge.errors import NotFound, Rejected
from arbridge.money import Money

SECRET = "whsec_simulated_test"
PLAN_META = {
    "arbridge_company": "1",
    "arbridge_invoices": "42",
    "arbridge_plan": "7",
    "arbridge_installment": "7:1",
}


class Sim:
    def __init__(self, tmp_path) -> None:
        self.clock = FixedClock(datetime(2026, 1, 31, 15, tzinfo=UTC))
        self.events: list[dict] = []
        self.gw = SimulatedStripe(
            tmp_path / "simulated-stripe.json",
            self.clock,
            "http://127.0.0.1:5000",
            SECRET,
            self.deliver,
        )

    def deliver(self, body: bytes, header: str) -> None:
        event = json.loads(body)
        assert header == sign(body, SECRET, event["created"])
        self.events.append(event)

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def customer(self, customer: str = "301") -> str:
        return self.gw.find_or_create_customer(
            CustomerRequest(
                company="1", customer=customer, name="Harbor Foods", email="a@h.example"
            )
        )

    def first_payment(self, customer: str, method: str, saved: str = "succeeds") -> str:
        """A plan's first Checkout, paid by `method`; returns the saved method's id."""
        session = self.gw.create_checkout_session(
            CheckoutRequest(
                amount=Money(Decimal("308.66"), "USD"),
                description="Acme Supply Co.: deposit on INV-1001",
                methods=["card", "us_bank_account"],
                success_url="http://127.0.0.1:5000/pay/tok/return?session_id={CHECKOUT_SESSION_ID}",
                cancel_url="http://127.0.0.1:5000/pay/tok",
                expires_at=self.clock.now() + timedelta(hours=1),
                idempotency_key=f"checkout:plan:7:1:{customer}",
                metadata=PLAN_META,
                customer=customer,
                save_payment_method=True,
            )
        )
        assert session.customer == customer
        self.gw.complete(session.id, method, "succeed", saved=saved)
        saved_method = self.gw.saved_payment_method(session.id)
        assert saved_method is not None and saved_method.customer == customer
        return saved_method.id

    def charge(self, customer: str, pm: str, key: str, kind: str = "card") -> ChargeResult:
        return self.gw.charge_off_session(
            OffSessionCharge(
                customer=customer,
                payment_method=pm,
                method_type=kind,
                amount=Money(Decimal("308.65"), "USD"),
                idempotency_key=key,
                metadata={**PLAN_META, "arbridge_installment": "7:2"},
                description="Acme Supply Co.: installment 2 of 4 on INV-1001",
            )
        )


@pytest.fixture
def sim(tmp_path) -> Sim:
    return Sim(tmp_path)


def test_one_customer_per_arbridge_customer(sim):
    first = sim.customer()
    assert sim.customer() == first and sim.customer("302") != first


def test_the_first_checkout_saves_the_method_on_the_customer(sim):
    cus = sim.customer()
    pm = sim.first_payment(cus, "card")
    completed = next(e for e in sim.events if e["type"] == "checkout.session.completed")
    assert completed["data"]["object"]["customer"] == cus
    [listed] = sim.gw.list_payment_methods(cus)
    assert (listed.id, listed.type, listed.brand, listed.last4) == (pm, "card", "visa", "4242")
    assert sim.gw.list_payment_methods("cus_someone_else") == []


def test_an_ordinary_checkout_saves_nothing(sim):
    session = sim.gw.create_checkout_session(
        CheckoutRequest(
            amount=Money(Decimal("10.00"), "USD"),
            description="invoice",
            methods=["card"],
            success_url="http://127.0.0.1:5000/done",
            cancel_url="http://127.0.0.1:5000/pay/tok",
            expires_at=sim.clock.now() + timedelta(hours=1),
            idempotency_key="checkout:1",
            metadata={"arbridge_company": "1"},
        )
    )
    sim.gw.complete(session.id, "card", "succeed")
    assert sim.gw.saved_payment_method(session.id) is None


def test_a_saved_behaviour_the_method_cannot_have_is_refused(sim):
    with pytest.raises(Rejected):
        sim.first_payment(sim.customer(), "us_bank_account", saved="requires_authentication")


def test_an_installment_charged_twice_with_one_key_is_one_payment(sim):
    cus = sim.customer()
    pm = sim.first_payment(cus, "card")
    first = sim.charge(cus, pm, "plan:7:2:try:1")
    again = sim.charge(cus, pm, "plan:7:2:try:1")
    assert first.outcome == "succeeded" and again == first
    assert sim.types().count("payment_intent.succeeded") == 1
    succeeded = next(e for e in sim.events if e["type"] == "payment_intent.succeeded")
    intent = succeeded["data"]["object"]
    assert (intent["id"], intent["amount"], intent["currency"]) == (
        first.payment_intent,
        30865,
        "usd",
    )
    assert intent["metadata"]["arbridge_charge_key"] == "plan:7:2:try:1"
    assert intent["metadata"]["arbridge_installment"] == "7:2"
    assert sim.gw.find_off_session_charge(cus, ["plan:7:2:try:1"]) == first
    assert sim.gw.find_off_session_charge("cus_other", ["plan:7:2:try:1"]) is None


def test_a_card_that_declines_then_recovers(sim):
    cus = sim.customer()
    pm = sim.first_payment(cus, "card", saved="declines")
    declined = sim.charge(cus, pm, "plan:7:2:try:1")
    assert (declined.outcome, declined.code, declined.decline_code) == (
        "declined",
        "card_declined",
        "insufficient_funds",
    )
    assert sim.types()[-1] == "payment_intent.payment_failed"
    assert sim.gw.find_off_session_charge(cus, ["plan:7:2:try:1"]) is None
    sim.gw.set_payment_method_behaviour(pm, "succeeds")  # the customer topped up their account
    assert sim.charge(cus, pm, "plan:7:2:try:1") == declined  # the same key: the same answer
    assert sim.charge(cus, pm, "plan:7:2:try:2").outcome == "succeeded"


def test_a_card_that_needs_its_holder_asks_for_action(sim):
    cus = sim.customer()
    pm = sim.first_payment(cus, "card", saved="requires_authentication")
    result = sim.charge(cus, pm, "plan:7:2:try:1")
    assert (result.outcome, result.code) == ("requires_action", "authentication_required")
    assert sim.gw.retrieve_charge(result.payment_intent) == result


def test_a_bank_debit_fails_four_days_later_by_the_clock(sim):
    cus = sim.customer()
    pm = sim.first_payment(cus, "us_bank_account", saved="fails")
    sim.clock.advance(timedelta(seconds=30))
    sim.gw.settle_due()  # the first payment's own settlement
    sent = sim.clock.now()
    result = sim.charge(cus, pm, "plan:7:2:try:1", kind="us_bank_account")
    assert result.outcome == "processing" and sim.types()[-1] == "payment_intent.processing"
    assert sim.gw.settles_at(result.payment_intent) == sent + timedelta(days=4)
    sim.clock.advance(timedelta(days=4) - timedelta(seconds=1))
    assert sim.gw.settle_due() == 0
    assert sim.gw.retrieve_charge(result.payment_intent).outcome == "processing"
    assert sim.gw.find_off_session_charge(cus, ["plan:7:2:try:1"]) == result
    sim.clock.advance(timedelta(seconds=1))
    assert sim.gw.settle_due() == 1
    assert sim.types()[-1] == "payment_intent.payment_failed"
    assert sim.events[-1]["data"]["object"]["last_payment_error"]["code"] == "insufficient_funds"
    later = sim.gw.retrieve_charge(result.payment_intent)
    assert (later.outcome, later.code) == ("declined", "insufficient_funds")
    assert sim.gw.settle_due() == 0  # settled once
    assert sim.gw.settles_at(result.payment_intent) is None


def test_a_bank_debit_settles_when_the_test_says(sim):
    cus = sim.customer()
    pm = sim.first_payment(cus, "us_bank_account")
    sim.gw.set_payment_method_behaviour(pm, "succeeds", settle_days=2)
    result = sim.charge(cus, pm, "k:1", kind="us_bank_account")
    sim.clock.advance(timedelta(days=2) - timedelta(seconds=1))
    sim.gw.settle_due()  # the first payment, by Checkout (seconds here)
    assert "payment_intent.succeeded" not in sim.types()
    sim.clock.advance(timedelta(seconds=1))
    assert sim.gw.settle_due() == 1
    assert sim.types()[-1] == "payment_intent.succeeded"
    assert sim.gw.retrieve_charge(result.payment_intent).outcome == "succeeded"


def test_a_charge_stripe_would_refuse_keeps_no_answer_under_its_key(sim):
    cus, other = sim.customer(), sim.customer("302")
    pm = sim.first_payment(cus, "card")
    with pytest.raises(Rejected):
        sim.charge(other, pm, "k:1")  # another customer's card
    with pytest.raises(Rejected):
        sim.charge(cus, pm, "k:1", kind="us_bank_account")
    with pytest.raises(NotFound):
        sim.gw.set_payment_method_behaviour("pm_sim_missing", "declines")
    assert sim.charge(cus, pm, "k:1").outcome == "succeeded"


def test_an_installment_charged_off_session_can_be_refunded(sim):
    cus = sim.customer()
    pm = sim.first_payment(cus, "card")
    paid = sim.charge(cus, pm, "k:1")
    sim.gw.refund(paid.payment_intent, Money(Decimal("8.65"), "USD"), "refund:1")
    refunded = sim.events[-1]["data"]["object"]
    assert (sim.types()[-1], refunded["payment_intent"], refunded["amount_refunded"]) == (
        "charge.refunded",
        paid.payment_intent,
        865,
    )


def test_a_state_file_from_before_plans_still_opens(sim):
    sim.gw.path.write_text(json.dumps({"sessions": {}, "idempotency": {}, "events": 3}))
    assert sim.gw.list_payment_methods("cus_x") == []
    assert sim.customer().startswith("cus_sim_")


def test_both_gateways_answer_every_call_of_the_interface_alike():
    calls = [n for n in vars(PaymentGateway) if not n.startswith("_") and n != "simulated"]
    for name in calls:
        wanted = list(inspect.signature(getattr(PaymentGateway, name)).parameters)
        for gateway in (StripeGateway, SimulatedStripe):
            assert list(inspect.signature(getattr(gateway, name)).parameters) == wanted, (
                gateway,
                name,
            )
