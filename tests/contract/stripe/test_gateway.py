"""StripeGateway against Stripe faked at the HTTP boundary (`responses`), with bodies built from
Stripe's own example objects (../shared/reference/stripe/fixtures3.json), asserting what we send."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import responses

from arbridge.connectors.stripe import (
    CheckoutRequest,
    StripeGateway,
    from_stripe_amount,
    to_stripe_amount,
)
from arbridge.errors import AuthExpired, NotFound, RateLimited, Rejected, Transient
from arbridge.money import Money

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "stripe"
API = "http://stripe.test"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def request(amount: Money, methods=("card",)) -> CheckoutRequest:
    return CheckoutRequest(
        amount=amount,
        description="Acme Supply Co.: invoice INV-1001",
        methods=list(methods),
        success_url="http://127.0.0.1:5000/pay/tok/return?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="http://127.0.0.1:5000/pay/tok",
        expires_at=datetime(2026, 11, 24, 16, tzinfo=UTC),
        idempotency_key="checkout:7:0:abc",
        metadata={"arbridge_company": "1", "arbridge_invoices": "42"},
        customer_email="ana@harbor.example",
    )


def form(call) -> dict[str, list[str]]:
    return parse_qs(call.request.body)


@responses.activate
def test_checkout_session_parameters_idempotency_and_connect_account():
    session = {
        **fixture("checkout_session"),
        "amount_total": 123456,
        "currency": "usd",
        "status": "open",
    }
    responses.post(f"{API}/v1/checkout/sessions", json=session)
    gw = StripeGateway("sk_test_platform", account="acct_1Nv0FGQ9RKHgCVdK", api_base=API)
    created = gw.create_checkout_session(
        request(Money(Decimal("1234.56"), "USD"), ("card", "us_bank_account"))
    )
    assert created.id == session["id"] and created.url == session["url"]
    assert created.amount == Money(Decimal("1234.56"), "USD")
    call = responses.calls[0]
    sent = form(call)
    assert sent["line_items[0][price_data][unit_amount]"] == ["123456"]
    assert sent["line_items[0][price_data][currency]"] == ["usd"]
    assert sent["payment_method_types[0]"] == ["card"] and sent["payment_method_types[1]"] == [
        "us_bank_account"
    ]
    assert sent["payment_intent_data[metadata][arbridge_invoices]"] == ["42"]
    assert sent["mode"] == ["payment"] and sent["expires_at"] == [
        str(int(datetime(2026, 11, 24, 16, tzinfo=UTC).timestamp()))
    ]
    assert call.request.headers["Idempotency-Key"] == "checkout:7:0:abc"
    assert call.request.headers["Stripe-Account"] == "acct_1Nv0FGQ9RKHgCVdK"
    assert call.request.headers["Stripe-Version"] == "2026-10-28.endive"


@responses.activate
def test_zero_decimal_currency_is_not_multiplied():
    responses.post(
        f"{API}/v1/checkout/sessions",
        json={**fixture("checkout_session"), "amount_total": 5000, "currency": "jpy"},
    )
    gw = StripeGateway("sk_test_x", api_base=API)
    created = gw.create_checkout_session(request(Money(Decimal(5000), "JPY")))
    assert form(responses.calls[0])["line_items[0][price_data][unit_amount]"] == ["5000"]
    assert created.amount == Money(Decimal(5000), "JPY")
    assert "Stripe-Account" not in responses.calls[0].request.headers


@pytest.mark.parametrize(
    ("money", "minor"),
    [
        (Money(Decimal("10.00"), "USD"), 1000),
        (Money(Decimal(10), "JPY"), 10),
        (Money(Decimal("1.234"), "KWD"), 1234),
        (Money(Decimal(500), "KRW"), 500),
        (Money(Decimal("0.01"), "EUR"), 1),
    ],
)
def test_minor_units_in_one_place(money, minor):
    assert to_stripe_amount(money) == minor
    assert from_stripe_amount(minor, money.currency) == money


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
        (
            401,
            {
                "error": {
                    "type": "invalid_request_error",
                    "message": "Invalid API Key provided: sk_test_***",
                }
            },
            AuthExpired,
        ),
        (
            400,
            {
                "error": {
                    "type": "invalid_request_error",
                    "param": "line_items",
                    "message": "Invalid integer",
                }
            },
            Rejected,
        ),
        (
            404,
            {"error": {"type": "invalid_request_error", "message": "No such checkout.session"}},
            NotFound,
        ),
        (500, {"error": {"type": "api_error", "message": "An unknown error occurred"}}, Transient),
    ],
)
@responses.activate
def test_stripe_errors_map_to_ours(status, body, error):
    responses.get(f"{API}/v1/checkout/sessions/cs_test_missing", json=body, status=status)
    gw = StripeGateway("sk_test_x", api_base=API)
    gw.client._requestor._client._max_network_retries = (
        0  # the retry policy is Stripe's; the mapping is ours
    )
    with pytest.raises(error):
        gw.retrieve_checkout_session("cs_test_missing")


@responses.activate
def test_refund_is_idempotent_by_our_key():
    responses.post(f"{API}/v1/refunds", json=fixture("refund"))
    gw = StripeGateway("sk_test_x", api_base=API)
    assert (
        gw.refund(
            "pi_1PgafyB7WZ01zgkWSjxsAJo3",
            Money(Decimal("25.00"), "USD"),
            "stripe_refund:pi:overpayment",
        )
        == fixture("refund")["id"]
    )
    call = responses.calls[0]
    assert form(call) == {
        "payment_intent": ["pi_1PgafyB7WZ01zgkWSjxsAJo3"],
        "amount": ["2500"],
        # The key rides along, so a later attempt can find this refund at Stripe.
        "metadata[arbridge_refund_key]": ["stripe_refund:pi:overpayment"],
    }
    assert call.request.headers["Idempotency-Key"] == "stripe_refund:pi:overpayment"


@responses.activate
def test_find_refund_names_a_refund_an_earlier_attempt_made_and_not_a_failed_one():
    refund = fixture("refund")
    mine = {**refund, "id": "re_mine", "metadata": {"arbridge_refund_key": "k:1"}}
    failed = {
        **refund,
        "id": "re_failed",
        "status": "failed",
        "metadata": {"arbridge_refund_key": "k:2"},
    }
    other = {**refund, "id": "re_dashboard", "metadata": {}}
    listing = {"object": "list", "has_more": False, "url": "/v1/refunds"}
    responses.get(f"{API}/v1/refunds", json={**listing, "data": [other, failed, mine]})
    responses.get(f"{API}/v1/refunds", json={**listing, "data": [other, failed]})
    gw = StripeGateway("sk_test_x", api_base=API)
    assert gw.find_refund("pi_1PgafyB7WZ01zgkWSjxsAJo3", ["k:1", "k:2"]) == "re_mine"
    assert gw.find_refund("pi_1PgafyB7WZ01zgkWSjxsAJo3", ["k:1", "k:2"]) is None
    sent = parse_qs(responses.calls[0].request.url.split("?", 1)[1])
    assert sent == {"payment_intent": ["pi_1PgafyB7WZ01zgkWSjxsAJo3"], "limit": ["100"]}


@responses.activate
def test_capabilities_of_the_connected_account():
    account = fixture("account")
    responses.get(
        f"{API}/v1/accounts/acct_1Nv0FGQ9RKHgCVdK",
        json={
            **account,
            "capabilities": {"card_payments": "active", "us_bank_account_ach_payments": "inactive"},
        },
    )
    gw = StripeGateway("sk_test_platform", account="acct_1Nv0FGQ9RKHgCVdK", api_base=API)
    assert gw.capabilities() == {
        "card_payments": "active",
        "us_bank_account_ach_payments": "inactive",
    }


@responses.activate
def test_a_session_is_read_back_as_stripe_sends_it():
    responses.get(
        f"{API}/v1/checkout/sessions/cs_test_r",
        json={**fixture("checkout_session"), "id": "cs_test_r", "status": "open"},
    )
    session = StripeGateway("sk_test_x", api_base=API).retrieve_checkout_session("cs_test_r")
    assert (session.id, session.status) == ("cs_test_r", "open")


@responses.activate
def test_expiring_a_session_sends_our_key_and_leaves_a_paid_one_paid():
    gw = StripeGateway("sk_test_x", api_base=API)
    responses.post(
        f"{API}/v1/checkout/sessions/cs_test_open/expire",
        json={**fixture("checkout_session"), "id": "cs_test_open", "status": "expired"},
    )
    assert gw.expire_checkout_session("cs_test_open", "stripe_expire:cs_test_open").status == (
        "expired"
    )
    assert responses.calls[0].request.headers["Idempotency-Key"] == "stripe_expire:cs_test_open"
    # Paid meanwhile: Stripe refuses to expire it; the session is read back, not an error.
    responses.post(
        f"{API}/v1/checkout/sessions/cs_test_paid/expire",
        status=400,
        json={
            "error": {
                "type": "invalid_request_error",
                "message": "Only Checkout Sessions with a status of `open` can be expired.",
            }
        },
    )
    responses.get(
        f"{API}/v1/checkout/sessions/cs_test_paid",
        json={
            **fixture("checkout_session"),
            "id": "cs_test_paid",
            "status": "complete",
            "payment_status": "paid",
        },
    )
    assert gw.expire_checkout_session("cs_test_paid", "k").status == "complete"
