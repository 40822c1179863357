"""The real StripeGateway end to end, Stripe faked at the HTTP boundary: a card payment and an ACH
payment that fails days later, with events built from Stripe's example objects and signed with
the configured webhook secret, delivered through the route, twice and out of order."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import responses
from sqlalchemy import select

from arbridge.connectors.stripe.simulated import sign
from arbridge.money import Money
from arbridge.services.payments.checkout import start_checkout
from arbridge.sync.db import transaction
from arbridge.sync.model import CollectedPayment, Customer, Invoice, MailMessage, WebhookEvent
from arbridge.sync.store import issue_pay_token, ledger_connection, open_invoices
from arbridge.worker import drain

API = "http://stripe.test"
SECRET = "whsec_test_flow"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stripe"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture
def stripe_rt(rt, settings):
    rt.settings = settings.with_(
        stripe_secret_key="sk_test_51Install", stripe_webhook_secret=SECRET, stripe_api_base=API
    )
    return rt


def open_invoice(rt, company):
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, company.id) if i.currency == "USD")
        return issue_pay_token(s, rt.clock, inv), inv.id, inv.open_balance_minor, inv.source_id


def fake_session_create(payment_intent: str):
    def reply(request):
        sent = dict(pair.split("=", 1) for pair in request.body.split("&"))
        from urllib.parse import unquote_plus

        sent = {unquote_plus(k): unquote_plus(v) for k, v in sent.items()}
        session = {
            **fixture("checkout_session"),
            "id": "cs_test_flow",
            "status": "open",
            "payment_intent": payment_intent,
            "amount_total": int(sent["line_items[0][price_data][unit_amount]"]),
            "currency": "usd",
            "expires_at": int(sent["expires_at"]),
            "metadata": {k[9:-1]: v for k, v in sent.items() if k.startswith("metadata[")},
            "url": "https://checkout.stripe.com/c/pay/cs_test_flow",
        }
        fake_session_create.last = session
        return 200, {}, json.dumps(session)

    return reply


def deliver(client, rt, event_type, obj, n, secret=SECRET):
    event = {**fixture("event"), "id": f"evt_flow_{n}", "type": event_type, "data": {"object": obj}}
    body = json.dumps(event).encode()
    response = client.post(
        "/webhooks/stripe",
        data=body,
        headers={
            "Stripe-Signature": sign(body, secret, int(rt.clock.now().timestamp())),
            "Content-Type": "application/json",
        },
    )
    return response.status_code


def ledger_payments(rt, company):
    with rt.sessions() as s:
        conn = ledger_connection(s, company.id)
    return [
        p
        for p in rt.demo_ledger(conn.tenant_id).read()["Payment"]
        if p["reference"].startswith("pi_")
    ]


@responses.activate
def test_card_payment_through_real_stripe_shapes(stripe_rt, client, demo_company):
    rt = stripe_rt
    token, invoice_id, balance, _ = open_invoice(rt, demo_company)
    responses.add_callback(
        responses.POST,
        f"{API}/v1/checkout/sessions",
        callback=fake_session_create("pi_3MtwBwLkdIwHu7ix28a3tqPa"),
    )
    url = start_checkout(rt, token)
    assert url == "https://checkout.stripe.com/c/pay/cs_test_flow"
    assert responses.calls[0].request.headers["Authorization"] == "Bearer sk_test_51Install"
    session = {**fake_session_create.last, "status": "complete", "payment_status": "paid"}
    assert deliver(client, rt, "checkout.session.completed", session, 1) == 200
    assert deliver(client, rt, "checkout.session.completed", session, 1) == 200  # Stripe retries
    assert (
        deliver(client, rt, "checkout.session.completed", session, 1, secret="whsec_wrong") == 400
    )
    drain(rt)
    with rt.sessions() as s:
        assert s.get(Invoice, invoice_id).status == "paid"
        [row] = s.scalars(select(CollectedPayment)).all()
    assert row.amount_minor == balance and row.status == "succeeded"
    assert len(ledger_payments(rt, demo_company)) == 1


@responses.activate
@pytest.mark.parametrize("paid_meanwhile", [False, True], ids=["still owed", "paid meanwhile"])
def test_ach_failure_days_later_through_real_stripe_shapes(
    stripe_rt, client, demo_company, clock, paid_meanwhile
):
    """The customer is told, with a link to pay again, unless by the time the email goes out
    nothing is owed any more (paid another way meanwhile); the owner is told either way."""
    rt = stripe_rt
    token, invoice_id, balance, _ = open_invoice(rt, demo_company)
    responses.add_callback(
        responses.POST, f"{API}/v1/checkout/sessions", callback=fake_session_create("pi_ach_flow")
    )
    start_checkout(rt, token)
    session = {
        **fake_session_create.last,
        "status": "complete",
        "payment_status": "unpaid",
        "payment_method_types": ["us_bank_account"],
    }
    intent = {
        **fixture("payment_intent"),
        "id": "pi_ach_flow",
        "amount": balance,
        "currency": "usd",
        "metadata": session["metadata"],
        "status": "processing",
        "payment_method_types": ["us_bank_account"],
    }
    # Out of order: the PaymentIntent's "processing" lands before the session's "completed".
    deliver(client, rt, "payment_intent.processing", intent, 1)
    deliver(client, rt, "checkout.session.completed", session, 2)
    drain(rt)
    with rt.sessions() as s:
        assert s.get(Invoice, invoice_id).payment_pending
    clock.advance(timedelta(days=4))
    failed_intent = {
        **intent,
        "status": "requires_payment_method",
        "last_payment_error": {
            "code": "insufficient_funds",
            "message": "The customer's bank account could not be debited (R01: insufficient funds).",
            "type": "card_error",
        },
    }
    deliver(client, rt, "checkout.session.async_payment_failed", session, 3)
    deliver(client, rt, "payment_intent.payment_failed", failed_intent, 4)
    if paid_meanwhile:  # a cheque, say, recorded in the ledger and synced before the email
        with transaction(rt.sessions) as s:
            paid = s.get(Invoice, invoice_id)
            paid.status, paid.ledger_balance_minor = "paid", 0
    drain(rt)
    with rt.sessions() as s:
        inv = s.get(Invoice, invoice_id)
        row = s.scalar(select(CollectedPayment))
        statuses = set(s.scalars(select(WebhookEvent.status)))
        mails = {m.kind: m for m in s.scalars(select(MailMessage))}
        customer = s.get(Customer, inv.customer_id)
        number = inv.number
    assert row.status == "failed" and statuses == {"processed"}
    assert ledger_payments(rt, demo_company) == []
    amount = Money.from_minor(balance, "USD").format()
    owner = next(m for m in mails.values() if m.kind == "owner" and "failed" in m.subject)
    if paid_meanwhile:
        assert "payment_failed" not in mails and amount in owner.text_body
        return
    assert inv.status == "open" and not inv.payment_pending and inv.open_balance_minor == balance
    # The customer is told in plain words, with a link that pays the invoice again ...
    told = mails["payment_failed"]
    assert "did not go through" in told.subject and amount in told.text_body
    assert "not enough money in the account" in told.text_body
    link = next(w for w in told.text_body.split() if "/pay/" in w)
    assert client.get(link.removeprefix(rt.settings.base_url)).status_code == 200
    # ... and the owner: who, which invoice, how much, why, and where to look.
    for part in (customer.name, number, amount, "not enough money in the account"):
        assert part in owner.text_body
    assert f"/c/{demo_company.slug}/invoices/{invoice_id}" in owner.text_body


def test_connect_events_must_come_from_the_companys_account(
    stripe_rt, client, demo_company, other_company_stripe
):
    """An event for company A's payment arriving on company B's connected account is refused."""
    rt = stripe_rt
    _, invoice_id, *_ = open_invoice(rt, demo_company)
    session = {
        **fixture("checkout_session"),
        "id": "cs_x",
        "payment_intent": "pi_x",
        "amount_total": 100,
        "currency": "usd",
        "status": "complete",
        "payment_status": "paid",
        "metadata": {
            "arbridge_company": str(demo_company.id),
            "arbridge_invoices": str(invoice_id),
        },
    }
    event = {
        **fixture("event"),
        "id": "evt_connect",
        "type": "checkout.session.completed",
        "account": other_company_stripe,
        "data": {"object": session},
    }
    body = json.dumps(event).encode()
    assert (
        client.post(
            "/webhooks/stripe",
            data=body,
            headers={"Stripe-Signature": sign(body, SECRET, int(rt.clock.now().timestamp()))},
        ).status_code
        == 200
    )
    drain(rt)
    with rt.sessions() as s:
        assert s.scalar(select(WebhookEvent.status)) == "failed"
        assert s.get(Invoice, invoice_id).status == "open"


@pytest.fixture
def other_company_stripe(rt):
    from arbridge.sync.model import Connection
    from arbridge.sync.store import create_company

    with transaction(rt.sessions) as s:
        other = create_company(
            s,
            rt.clock,
            name="Borealis",
            slug="borealis",
            home_currency="USD",
            timezone="UTC",
            country="US",
            owner_email="o@borealis.example",
        )
        s.add(
            Connection(
                company_id=other.id,
                provider="stripe",
                tenant_id="acct_borealis",
                status="active",
                created_at=rt.clock.now(),
            )
        )
    return "acct_borealis"


@responses.activate
def test_an_account_without_ach_still_takes_cards(stripe_rt, demo_company):
    rt = stripe_rt
    token, *_ = open_invoice(rt, demo_company)
    responses.post(
        f"{API}/v1/checkout/sessions",
        status=400,
        json={
            "error": {
                "type": "invalid_request_error",
                "param": "payment_method_types",
                "message": "The payment method type provided: us_bank_account is invalid. Please ensure the provided type is activated in your dashboard.",
            }
        },
    )
    responses.add_callback(
        responses.POST, f"{API}/v1/checkout/sessions", callback=fake_session_create("pi_card_only")
    )
    assert start_checkout(rt, token) == "https://checkout.stripe.com/c/pay/cs_test_flow"
    first, second = (c.request for c in responses.calls)
    assert "us_bank_account" in first.body and "us_bank_account" not in second.body
    assert second.headers["Idempotency-Key"] == first.headers["Idempotency-Key"] + ":card"


@responses.activate
def test_card_declined_then_paid_in_same_checkout_is_recorded_paid(stripe_rt, client, demo_company):
    """Checkout lets the customer try another card after a decline: the PaymentIntent fails
    (payment_intent.payment_failed), then the same PaymentIntent succeeds and the session
    completes paid. The failure was not final: the invoice is paid and in the ledger once."""
    rt = stripe_rt
    token, invoice_id, balance, _ = open_invoice(rt, demo_company)
    responses.add_callback(
        responses.POST, f"{API}/v1/checkout/sessions", callback=fake_session_create("pi_decl_ok")
    )
    start_checkout(rt, token)
    session = {**fake_session_create.last, "status": "complete", "payment_status": "paid"}
    declined = {
        **fixture("payment_intent"),
        "id": "pi_decl_ok",
        "amount": balance,
        "currency": "usd",
        "metadata": session["metadata"],
        "payment_method_types": ["card"],
        "status": "requires_payment_method",
        "last_payment_error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
        },
    }
    assert deliver(client, rt, "payment_intent.payment_failed", declined, 1) == 200
    drain(rt)  # the decline is recorded first, as Stripe sends it first
    assert deliver(client, rt, "checkout.session.completed", session, 2) == 200
    assert deliver(client, rt, "payment_intent.payment_failed", declined, 1) == 200  # a retry
    drain(rt)
    with rt.sessions() as s:
        inv = s.get(Invoice, invoice_id)
        [row] = s.scalars(select(CollectedPayment)).all()
        statuses = set(s.scalars(select(WebhookEvent.status)))
    assert inv.status == "paid" and inv.open_balance_minor == 0 and not inv.payment_pending
    assert row.status == "succeeded" and row.amount_minor == balance
    assert statuses == {"processed"}
    [posted] = ledger_payments(rt, demo_company)
    assert posted["reference"] == "pi_decl_ok" and posted["status"] == "POSTED"


class FakeSessions:
    """Stripe's Checkout Sessions at the HTTP boundary: create (one id per call) and expire
    (only an open session; Stripe refuses any other with a 400)."""

    def __init__(self) -> None:
        self.sessions: dict[str, dict] = {}
        self.expired: list[str] = []

    def create(self, request):
        from urllib.parse import parse_qsl

        sent = dict(parse_qsl(request.body))
        n = len(self.sessions) + 1
        session = {
            **fixture("checkout_session"),
            "id": f"cs_test_link{n}",
            "status": "open",
            "payment_status": "unpaid",
            "payment_intent": f"pi_link{n}",
            "amount_total": int(sent["line_items[0][price_data][unit_amount]"]),
            "currency": "usd",
            "expires_at": int(sent["expires_at"]),
            "metadata": {k[9:-1]: v for k, v in sent.items() if k.startswith("metadata[")},
            "url": f"https://checkout.stripe.com/c/pay/cs_test_link{n}",
        }
        self.sessions[session["id"]] = session
        return 200, {}, json.dumps(session)

    def expire(self, request):
        sid = request.url.split("/checkout/sessions/", 1)[1].split("/", 1)[0]
        session = self.sessions[sid]
        if session["status"] != "open":
            return (
                400,
                {},
                json.dumps(
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "message": "Only Checkout Sessions with a status of `open` can be expired.",
                        }
                    }
                ),
            )
        session["status"] = "expired"
        self.expired.append(sid)
        return 200, {}, json.dumps(session)

    def install(self) -> None:
        import re

        responses.add_callback(responses.POST, f"{API}/v1/checkout/sessions", callback=self.create)
        responses.add_callback(
            responses.POST,
            re.compile(re.escape(API) + r"/v1/checkout/sessions/[^/]+/expire"),
            callback=self.expire,
        )


def two_links(rt, demo_company) -> tuple[FakeSessions, str, str]:
    """Stripe's sessions faked at the HTTP boundary, and two payment links for one invoice
    (a reminder's and an older one)."""
    stripe = FakeSessions()
    stripe.install()
    token_a, invoice_id, *_ = open_invoice(rt, demo_company)
    with transaction(rt.sessions) as s:
        token_b = issue_pay_token(s, rt.clock, s.get(Invoice, invoice_id))
    return stripe, token_a, token_b


@responses.activate
def test_two_pay_links_for_one_invoice_were_both_payable_until_a_payment_came_in(
    stripe_rt, client, demo_company
):
    """Both links' sessions stayed open at Stripe until the worker recorded a payment, so two
    tabs paid within that time both charged the customer. Opening the second closes the first
    at Stripe, there and then."""
    from arbridge.errors import Rejected
    from arbridge.sync.model import CheckoutSessionRow
    from tests.web.conftest import csrf_token

    rt = stripe_rt
    stripe, token_a, token_b = two_links(rt, demo_company)
    # The customer opens both links (the reminder's and an older one), a checkout on each.
    start_checkout(rt, token_a)
    csrf = csrf_token(client.get(f"/pay/{token_a}").data)  # A's page stays open in a tab
    start_checkout(rt, token_b)
    first, second = stripe.sessions.values()
    # A's session is closed at Stripe before B's opens: only one can take the money.
    assert stripe.expired == [first["id"]]
    assert [s["status"] for s in stripe.sessions.values()] == ["expired", "open"]
    paid = {**second, "status": "complete", "payment_status": "paid"}
    stripe.sessions[second["id"]] = paid
    assert deliver(client, rt, "checkout.session.completed", paid, 1) == 200
    drain(rt)
    drain(rt)
    assert stripe.expired == [first["id"]]  # nothing else left to close
    with rt.sessions() as s:
        statuses = dict(
            s.execute(select(CheckoutSessionRow.stripe_session_id, CheckoutSessionRow.status))
            .tuples()
            .all()
        )
    assert statuses[first["id"]] == "expired"
    # The first link now says the invoice is paid and opens nothing.
    calls = len(responses.calls)
    page = client.get(f"/pay/{token_a}")
    assert page.status_code == 200 and b"paid" in page.data.lower()
    refused = client.post(f"/pay/{token_a}/checkout", data={"csrf_token": csrf})
    assert refused.status_code == 409 and b"nothing to pay" in refused.data
    with pytest.raises(Rejected, match="paid"):
        start_checkout(rt, token_a)
    assert len(responses.calls) == calls  # no session opened at Stripe
    with rt.sessions() as s:
        assert len(s.scalars(select(CheckoutSessionRow)).all()) == 2


@responses.activate
def test_a_link_opened_while_another_links_payment_is_unrecorded_opens_no_second_session(
    stripe_rt, demo_company
):
    """The first tab's session was paid a moment ago and its webhook is not in yet: Stripe
    will not close a complete session, and the second link opens none."""
    from arbridge.errors import Rejected

    rt = stripe_rt
    stripe, token_a, token_b = two_links(rt, demo_company)
    start_checkout(rt, token_a)
    [first] = stripe.sessions.values()
    stripe.sessions[first["id"]] = {**first, "status": "complete", "payment_status": "paid"}
    responses.add(
        responses.GET,
        f"{API}/v1/checkout/sessions/{first['id']}",
        json=stripe.sessions[first["id"]],
    )
    with pytest.raises(Rejected, match="just been made"):
        start_checkout(rt, token_b)
    assert len(stripe.sessions) == 1 and stripe.expired == []


def _paid_then_disputed(rt, client, demo_company, pi):
    token, invoice_id, balance, _ = open_invoice(rt, demo_company)
    responses.add_callback(
        responses.POST, f"{API}/v1/checkout/sessions", callback=fake_session_create(pi)
    )
    start_checkout(rt, token)
    session = {**fake_session_create.last, "status": "complete", "payment_status": "paid"}
    deliver(client, rt, "checkout.session.completed", session, 1)
    drain(rt)
    dispute = {
        **fixture("dispute"),
        "id": "dp_1Pgc71B7WZ01zgkWMevJiAUx",
        "amount": balance,
        "charge": "ch_3MtwBwLkdIwHu7ix28a3tqPa",
        "payment_intent": pi,
        "reason": "fraudulent",
        "status": "needs_response",
        "is_charge_refundable": False,
        "payment_method_details": {
            "card": {"brand": "visa", "case_type": "chargeback", "network_reason_code": "10.4"},
            "type": "card",
        },
    }
    deliver(client, rt, "charge.dispute.created", dispute, 2)
    drain(rt)
    with rt.sessions() as s:
        inv = s.get(Invoice, invoice_id)
        assert inv.status == "open" and inv.open_balance_minor == balance
    assert [p["status"] for p in ledger_payments(rt, demo_company)] == ["VOIDED"]
    return invoice_id, balance, dispute


@responses.activate
def test_a_won_dispute_closes_the_invoice_again_and_writes_the_payment_back_once(
    stripe_rt, client, demo_company
):
    rt = stripe_rt
    pi = "pi_3MtwBwLkdIwHu7ix28a3tqPa"
    invoice_id, balance, dispute = _paid_then_disputed(rt, client, demo_company, pi)
    won = {**dispute, "status": "won"}
    # Stripe sends both when the bank sides with the business; each may come twice.
    deliver(client, rt, "charge.dispute.funds_reinstated", won, 3)
    deliver(client, rt, "charge.dispute.closed", won, 4)
    deliver(client, rt, "charge.dispute.closed", won, 4)
    drain(rt)
    deliver(client, rt, "charge.dispute.funds_reinstated", won, 3)
    deliver(client, rt, "charge.dispute.created", dispute, 2)  # a late repeat of the opening
    drain(rt)
    drain(rt)
    with rt.sessions() as s:
        inv = s.get(Invoice, invoice_id)
        row = s.scalar(select(CollectedPayment))
        statuses = set(s.scalars(select(WebhookEvent.status)))
    assert inv.status == "paid" and inv.open_balance_minor == 0
    assert row.status == "succeeded" and row.unapplied_minor == 0
    assert statuses == {"processed"}
    live = [p for p in ledger_payments(rt, demo_company) if p["status"] == "POSTED"]
    assert [p["amount"] for p in live] == [str(Money.from_minor(balance, "USD").amount)]


@responses.activate
def test_a_lost_dispute_leaves_the_payment_reversed(stripe_rt, client, demo_company):
    rt = stripe_rt
    pi = "pi_3MtwBwLkdIwHu7ix28a3tqPb"
    invoice_id, balance, dispute = _paid_then_disputed(rt, client, demo_company, pi)
    deliver(client, rt, "charge.dispute.closed", {**dispute, "status": "lost"}, 3)
    drain(rt)
    with rt.sessions() as s:
        inv = s.get(Invoice, invoice_id)
        row = s.scalar(select(CollectedPayment))
    assert inv.status == "open" and inv.open_balance_minor == balance
    assert row.status == "disputed"
    assert [p["status"] for p in ledger_payments(rt, demo_company)] == ["VOIDED"]
