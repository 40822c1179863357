"""The owner's side of payments: Stripe key connection (faked at HTTP), the payments list,
the one-click overpayment refund, statement links, and no cross-company reach."""

from __future__ import annotations

import json
from pathlib import Path

import responses
from sqlalchemy import select

from arbridge.sync.db import transaction
from arbridge.sync.model import CollectedPayment, Connection, Customer, OutboxMessage
from arbridge.sync.store import open_invoices
from tests.web.conftest import csrf_token, parse

API = "http://stripe.test"


def settings_page(owner_client):
    page = owner_client.get("/c/demo/settings")
    assert page.status_code == 200
    return page


def test_demo_shows_the_simulated_checkout_with_both_methods(owner_client):
    doc = parse(settings_page(owner_client).data)
    status = doc.by_id("stripe-status").text
    assert "Simulated checkout" in status and "Card payments: on" in status


@responses.activate
def test_connecting_a_restricted_key_checks_it_with_stripe_and_stores_it_encrypted(
    owner_client, rt, demo_company, settings
):
    rt.settings = settings.with_(stripe_api_base=API)
    account = json.loads(Path("tests/fixtures/stripe/account.json").read_text())
    responses.get(f"{API}/v1/account", json={**account, "id": "acct_1Nv0FGQ9RKHgCVdK"})
    responses.get(
        f"{API}/v1/account",
        json={
            **account,
            "id": "acct_1Nv0FGQ9RKHgCVdK",
            "capabilities": {"card_payments": "active", "us_bank_account_ach_payments": "inactive"},
        },
    )
    # A restricted key usually may not manage webhook endpoints (issue 8: the owner pastes one).
    denied = {
        "error": {
            "type": "invalid_request_error",
            "message": "The provided key does not have the required permissions for this endpoint.",
        }
    }
    responses.get(f"{API}/v1/webhook_endpoints", status=403, json=denied)
    page = settings_page(owner_client)
    response = owner_client.post(
        "/c/demo/stripe/key", data={"csrf_token": csrf_token(page.data), "api_key": "rk_test_51Abc"}
    )
    assert response.status_code == 302
    assert responses.calls[0].request.headers["Authorization"] == "Bearer rk_test_51Abc"
    with rt.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.provider == "stripe"))
    assert (
        conn.tenant_id == "acct_1Nv0FGQ9RKHgCVdK"
        and "rk_test_51Abc" not in conn.credentials_encrypted
    )
    assert json.loads(rt.keyring.decrypt(conn.credentials_encrypted)) == {
        "api_key": "rk_test_51Abc"
    }
    status = parse(settings_page(owner_client).data).by_id("stripe-status").text
    assert "Card payments: on" in status and "US bank account (ACH): off" in status


@responses.activate
def test_a_bad_key_is_refused_with_a_sentence(owner_client, rt, settings):
    rt.settings = settings.with_(stripe_api_base=API)
    responses.get(
        f"{API}/v1/account",
        status=401,
        json={
            "error": {
                "type": "invalid_request_error",
                "message": "Invalid API Key provided: rk_test_***bad",
            }
        },
    )
    page = settings_page(owner_client)
    response = owner_client.post(
        "/c/demo/stripe/key",
        data={"csrf_token": csrf_token(page.data), "api_key": "rk_test_bad"},
        follow_redirects=True,
    )
    assert b"Stripe did not accept that key" in response.data
    response = owner_client.post(
        "/c/demo/stripe/key",
        data={"csrf_token": csrf_token(page.data), "api_key": "pk_live_oops"},
        follow_redirects=True,
    )
    assert b"does not look like a Stripe secret" in response.data
    with rt.sessions() as s:
        assert s.scalar(select(Connection).where(Connection.provider == "stripe")) is None


def test_overpayment_refund_button_queues_one_refund(owner_client, rt, demo_company):
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        s.add(
            CollectedPayment(
                company_id=demo_company.id,
                customer_id=inv.customer_id,
                payment_intent_id="pi_over",
                currency="USD",
                amount_minor=5000,
                discount_minor=0,
                unapplied_minor=5000,
                refunded_minor=0,
                status="succeeded",
                created_at=rt.clock.now(),
                updated_at=rt.clock.now(),
            )
        )
    dashboard = owner_client.get("/c/demo/")
    doc = parse(dashboard.data)
    row = doc.by_id("payments").find("tr", **{"data-payment": "1"})
    assert "overpaid" in row.text and "Refund $50.00" in row.text
    for _ in range(2):  # a double click
        owner_client.post(
            "/c/demo/payments/1/refund", data={"csrf_token": csrf_token(dashboard.data)}
        )
    with rt.sessions() as s:
        refunds = s.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "stripe_refund")
        ).all()
    assert len(refunds) == 1 and refunds[0].payload["amount_minor"] == 5000


def test_a_statement_link_pays_all_open_invoices_of_the_customer(
    owner_client, client, rt, demo_company
):
    with rt.sessions() as s:
        customer = next(
            c
            for c in s.scalars(select(Customer).where(Customer.company_id == demo_company.id))
            if sum(
                1
                for i in open_invoices(s, demo_company.id)
                if i.customer_id == c.id and i.currency == "USD"
            )
            >= 2
        )
        mine = [i for i in open_invoices(s, demo_company.id) if i.customer_id == customer.id]
    page = owner_client.get(f"/c/demo/invoices/{mine[0].id}")
    made = owner_client.post(
        f"/c/demo/customers/{customer.id}/statement-link",
        data={"csrf_token": csrf_token(page.data)},
    )
    link = parse(made.data).by_id("statement-link").attrs["href"]
    statement = client.get(link.replace(rt.settings.base_url, ""))
    doc = parse(statement.data)
    rows = doc.by_id("statement").find("tbody").find_all("tr")
    assert len(rows) == len(mine)
    total = sum(i.open_balance_minor for i in mine)
    from arbridge.money import Money

    assert doc.by_id("amount-due").text == Money.from_minor(total, mine[0].currency).format()


def test_no_reach_into_another_company(owner_client, rt, other_company):
    dashboard = owner_client.get("/c/demo/")
    token = csrf_token(dashboard.data)
    with transaction(rt.sessions) as s:
        s.add(
            CollectedPayment(
                company_id=other_company.company.id,
                payment_intent_id="pi_theirs",
                currency="USD",
                amount_minor=100,
                discount_minor=0,
                unapplied_minor=100,
                refunded_minor=0,
                status="succeeded",
                created_at=rt.clock.now(),
                updated_at=rt.clock.now(),
            )
        )
        theirs = s.scalar(
            select(CollectedPayment.id).where(CollectedPayment.payment_intent_id == "pi_theirs")
        )
        their_customer = s.scalar(
            select(Customer.id).where(Customer.company_id == other_company.company.id)
        )
    assert (
        owner_client.post(
            f"/c/demo/payments/{theirs}/refund", data={"csrf_token": token}
        ).status_code
        == 404
    )
    assert (
        owner_client.post(
            f"/c/demo/customers/{their_customer}/statement-link", data={"csrf_token": token}
        ).status_code
        == 404
    )


def test_revoking_an_invoices_links_makes_them_404(owner_client, client, rt, demo_company):
    with rt.sessions() as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
    page = owner_client.get(f"/c/demo/invoices/{inv.id}")
    made = owner_client.post(
        f"/c/demo/invoices/{inv.id}/pay-link", data={"csrf_token": csrf_token(page.data)}
    )
    shown = parse(owner_client.get(made.headers["Location"]).data)
    link = shown.by_id("pay-link").attrs["href"].replace(rt.settings.base_url, "")
    assert client.get(link).status_code == 200
    owner_client.post(
        f"/c/demo/invoices/{inv.id}/revoke-links", data={"csrf_token": csrf_token(page.data)}
    )
    # A plain 404, as for any token that is no good (issue 4).
    assert client.get(link).status_code == 404


@responses.activate
def test_connect_onboarding_creates_the_account_once_and_finishes_on_return(
    owner_client, rt, settings, demo_company
):
    rt.settings = settings.with_(
        stripe_api_base=API, stripe_connect=True, stripe_secret_key="sk_test_platform"
    )
    account = json.loads(Path("tests/fixtures/stripe/account.json").read_text())
    link = {
        "object": "account_link",
        "created": 1764000000,
        "expires_at": 1764000300,
        "url": "https://connect.stripe.com/setup/s/acct_1Nv0FGQ9RKHgCVdK/abc",
    }
    responses.post(
        f"{API}/v1/accounts",
        json={**account, "id": "acct_1Nv0FGQ9RKHgCVdK", "charges_enabled": False},
    )
    responses.post(f"{API}/v1/account_links", json=link)
    page = settings_page(owner_client)
    assert "Not connected" in parse(page.data).by_id("stripe-status").text
    started = owner_client.post(
        "/c/demo/stripe/connect", data={"csrf_token": csrf_token(page.data)}
    )
    assert started.status_code == 303 and started.headers["Location"] == link["url"]
    sent = dict(pair.split("=", 1) for pair in responses.calls[0].request.body.split("&"))
    assert sent["type"] == "standard" and sent["country"] == "US"
    assert responses.calls[0].request.headers["Idempotency-Key"] == f"connect:{demo_company.id}"
    assert "acct_1Nv0FGQ9RKHgCVdK" in responses.calls[1].request.body
    # A second press reuses the account: only a new link is made.
    owner_client.post("/c/demo/stripe/connect", data={"csrf_token": csrf_token(page.data)})
    assert [c.request.url.rsplit("/", 1)[-1] for c in responses.calls] == [
        "accounts",
        "account_links",
        "account_links",
    ]
    responses.get(
        f"{API}/v1/accounts/acct_1Nv0FGQ9RKHgCVdK",
        json={**account, "id": "acct_1Nv0FGQ9RKHgCVdK", "charges_enabled": True},
    )
    back = owner_client.get("/c/demo/stripe/return", follow_redirects=True)
    assert b"customers can pay online" in back.data
    assert responses.calls[-1].request.headers["Stripe-Account"] == "acct_1Nv0FGQ9RKHgCVdK"
    with rt.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.provider == "stripe"))
    assert (
        conn.status == "active"
        and conn.tenant_id == "acct_1Nv0FGQ9RKHgCVdK"
        and conn.credentials_encrypted is None
    )


def _overpaid(rt, demo_company, pi="pi_over", when=None, invoice=None, applied=0):
    """A collected payment with $50.00 more than was owed, touching `invoice` when given."""
    from arbridge.sync.model import CollectedAllocation

    with transaction(rt.sessions) as s:
        inv = invoice or next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        row = CollectedPayment(
            company_id=demo_company.id,
            customer_id=inv.customer_id,
            payment_intent_id=pi,
            method="card",
            currency="USD",
            amount_minor=applied + 5000,
            discount_minor=0,
            unapplied_minor=5000,
            refunded_minor=0,
            status="succeeded",
            created_at=when or rt.clock.now(),
            updated_at=when or rt.clock.now(),
        )
        row.allocations.append(
            CollectedAllocation(invoice_id=inv.id, amount_minor=applied, discount_minor=0)
        )
        s.add(row)
        s.flush()
        return row.id


def _refund_cell(owner_client, payment_id):
    doc = parse(owner_client.get("/c/demo/").data)
    return doc.by_id("payments").find("tr", **{"data-payment": str(payment_id)})


STRIPE_ERROR = {
    "error": {
        "type": "invalid_request_error",
        "code": "balance_insufficient",
        "message": "You have insufficient funds in your Stripe account for this refund.",
        "request_log_url": "https://dashboard.stripe.com/test/logs/req_1",
    }
}


@responses.activate
def test_a_failed_refund_says_so_and_a_retry_refunds_once_with_a_new_key(
    owner_client, rt, demo_company, settings
):
    from arbridge.worker import drain

    rt.settings = settings.with_(stripe_secret_key="sk_test_51Install", stripe_api_base=API)
    payment_id = _overpaid(rt, demo_company)
    refund = json.loads(Path("tests/fixtures/stripe/refund.json").read_text())
    responses.post(f"{API}/v1/refunds", status=400, json=STRIPE_ERROR)
    dashboard = owner_client.get("/c/demo/")
    pressed = owner_client.post(
        f"/c/demo/payments/{payment_id}/refund",
        data={"csrf_token": csrf_token(dashboard.data)},
        follow_redirects=True,
    )
    assert b"sent to Stripe" not in pressed.data  # nothing has gone anywhere yet
    assert "waiting to go to Stripe" in _refund_cell(owner_client, payment_id).text
    drain(rt)
    cell = _refund_cell(owner_client, payment_id).text
    assert "Refund of $50.00 failed" in cell and "insufficient funds" in cell
    assert "sent to Stripe" not in cell and "Try the refund again" in cell
    # The owner tops up the Stripe balance and tries again: a new key, and Stripe refunds.
    responses.replace(
        responses.POST,
        f"{API}/v1/refunds",
        json={
            **refund,
            "id": "re_3MtwBwLkdIwHu7ix0Q1Z2b3c",
            "amount": 5000,
            "payment_intent": "pi_over",
        },
    )
    responses.get(
        f"{API}/v1/refunds",
        json={"object": "list", "data": [], "has_more": False, "url": "/v1/refunds"},
    )
    owner_client.post(
        f"/c/demo/payments/{payment_id}/refund", data={"csrf_token": csrf_token(dashboard.data)}
    )
    drain(rt)
    cell = _refund_cell(owner_client, payment_id).text
    assert "Refund of $50.00 sent to Stripe" in cell and "failed" not in cell
    posts = [c for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 2 and [c.response.status_code for c in posts] == [400, 200]
    keys = [c.request.headers["Idempotency-Key"] for c in posts]
    assert keys[0] != keys[1]
    # A third press while Stripe's confirmation is on its way queues nothing.
    owner_client.post(
        f"/c/demo/payments/{payment_id}/refund", data={"csrf_token": csrf_token(dashboard.data)}
    )
    with rt.sessions() as s:
        rows = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "stripe_refund")).all()
    assert [r.status for r in rows] == ["failed", "sent"]


@responses.activate
def test_a_refund_whose_outcome_is_unknown_is_checked_at_stripe_before_another(
    owner_client, rt, demo_company, settings
):
    """The worker gave up on a refund Stripe never answered: Stripe may have made it. A retry
    asks Stripe for refunds carrying the earlier attempt's key and makes no second one."""
    from sqlalchemy import update

    from arbridge.worker import drain

    rt.settings = settings.with_(stripe_secret_key="sk_test_51Install", stripe_api_base=API)
    payment_id = _overpaid(rt, demo_company)
    dashboard = owner_client.get("/c/demo/")
    owner_client.post(
        f"/c/demo/payments/{payment_id}/refund", data={"csrf_token": csrf_token(dashboard.data)}
    )
    with transaction(rt.sessions) as s:  # eight attempts, each without an answer
        first_key = s.scalar(select(OutboxMessage.key))
        s.execute(
            update(OutboxMessage).values(
                status="dead", attempts=8, last_error="Stripe: Network error: read timed out"
            )
        )
    assert "did not answer" in _refund_cell(owner_client, payment_id).text
    refund = json.loads(Path("tests/fixtures/stripe/refund.json").read_text())
    made = {
        **refund,
        "id": "re_3MtwBwLkdIwHu7ix0Q1Z2b3d",
        "amount": 5000,
        "payment_intent": "pi_over",
        "metadata": {"arbridge_refund_key": first_key},
    }
    responses.get(
        f"{API}/v1/refunds",
        json={"object": "list", "data": [made], "has_more": False, "url": "/v1/refunds"},
    )
    owner_client.post(
        f"/c/demo/payments/{payment_id}/refund", data={"csrf_token": csrf_token(dashboard.data)}
    )
    drain(rt)
    assert [c.request.method for c in responses.calls] == ["GET"]  # no second refund
    assert "pi_over" in responses.calls[0].request.url
    assert "sent to Stripe" in _refund_cell(owner_client, payment_id).text


def test_an_older_overpayment_is_refundable_from_its_invoice_page(owner_client, rt, demo_company):
    from datetime import timedelta

    with rt.sessions() as s:
        usd = [i for i in open_invoices(s, demo_company.id) if i.currency == "USD"]
        target = usd[0]
        s.expunge(target)
    oldest = _overpaid(
        rt, demo_company, "pi_oldest", rt.clock.now() - timedelta(days=60), target, applied=1000
    )
    for n in range(11):
        _overpaid(
            rt, demo_company, f"pi_newer_{n}", rt.clock.now() - timedelta(days=10 - n), usd[1 + n]
        )
    assert _refund_cell(owner_client, oldest) is None  # not among the ten on the dashboard
    page = owner_client.get(f"/c/demo/invoices/{target.id}")
    row = parse(page.data).by_id("invoice-payments").find("tr", **{"data-payment": str(oldest)})
    assert "overpaid" in row.text and "Refund $50.00" in row.text
    done = owner_client.post(
        f"/c/demo/payments/{oldest}/refund",
        data={"csrf_token": csrf_token(page.data), "invoice_id": str(target.id)},
    )
    assert done.status_code == 302 and done.headers["Location"].endswith(
        f"/c/demo/invoices/{target.id}"
    )
    with rt.sessions() as s:
        [queued] = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "stripe_refund"))
    assert (
        queued.payload["payment_intent"] == "pi_oldest" and queued.payload["amount_minor"] == 5000
    )


def test_a_payment_that_applied_nothing_is_refundable_from_the_invoice_it_was_for(
    owner_client, rt, demo_company
):
    """Paid otherwise while the customer was on the checkout: nothing applied, all of it an
    overpayment, found on the invoice page through the checkout session it paid."""
    from datetime import timedelta

    from arbridge.sync.model import CheckoutSessionRow, PayToken
    from arbridge.sync.store import issue_pay_token

    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        issue_pay_token(s, rt.clock, inv)
        link = s.scalar(select(PayToken.id).where(PayToken.invoice_id == inv.id))
        s.add(
            CheckoutSessionRow(
                company_id=demo_company.id,
                pay_token_id=link,
                stripe_session_id="cs_test_elsewhere",
                url="https://checkout.stripe.com/c/pay/cs_test_elsewhere",
                invoice_ids=[inv.id],
                currency="USD",
                amount_minor=5000,
                discount_minor=0,
                basis="x",
                status="complete",
                expires_at=rt.clock.now() + timedelta(hours=1),
                created_at=rt.clock.now(),
            )
        )
        row = CollectedPayment(
            company_id=demo_company.id,
            customer_id=inv.customer_id,
            payment_intent_id="pi_elsewhere",
            checkout_session_id="cs_test_elsewhere",
            currency="USD",
            amount_minor=5000,
            discount_minor=0,
            unapplied_minor=5000,
            refunded_minor=0,
            status="succeeded",
            created_at=rt.clock.now(),
            updated_at=rt.clock.now(),
        )
        s.add(row)
        s.flush()
        payment_id, invoice_id = row.id, inv.id
    page = owner_client.get(f"/c/demo/invoices/{invoice_id}")
    row = parse(page.data).by_id("invoice-payments").find("tr", **{"data-payment": str(payment_id)})
    assert "Refund $50.00" in row.text


@responses.activate
def test_a_new_overpayment_after_a_confirmed_refund_is_refunded_anew(
    owner_client, rt, demo_company, settings
):
    """A confirmed refund is not an "earlier attempt" of the next one (say, after a dispute was
    won): the next refund goes to Stripe, rather than being taken for the old one."""
    from sqlalchemy import update

    from arbridge.worker import drain

    rt.settings = settings.with_(stripe_secret_key="sk_test_51Install", stripe_api_base=API)
    payment_id = _overpaid(rt, demo_company)
    refund = json.loads(Path("tests/fixtures/stripe/refund.json").read_text())
    responses.post(f"{API}/v1/refunds", json={**refund, "id": "re_first", "amount": 5000})
    token = csrf_token(owner_client.get("/c/demo/").data)
    owner_client.post(f"/c/demo/payments/{payment_id}/refund", data={"csrf_token": token})
    drain(rt)
    with transaction(rt.sessions) as s:  # Stripe confirmed it; later $30.00 more is overpaid
        s.execute(
            update(CollectedPayment)
            .where(CollectedPayment.id == payment_id)
            .values(refunded_minor=5000, unapplied_minor=8000, amount_minor=8000)
        )
    assert "Refunded $50.00" in _refund_cell(owner_client, payment_id).text
    responses.replace(
        responses.POST, f"{API}/v1/refunds", json={**refund, "id": "re_second", "amount": 3000}
    )
    owner_client.post(f"/c/demo/payments/{payment_id}/refund", data={"csrf_token": token})
    drain(rt)
    assert [c.request.method for c in responses.calls] == ["POST", "POST"]
    assert "$30.00 sent to Stripe (re_second)" in _refund_cell(owner_client, payment_id).text
