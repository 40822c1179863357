"""The payment routes over HTTP: webhook verification, CSRF, the POST-only checkout, states."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from arbridge.connectors.stripe.simulated import sign
from arbridge.services.payments.webhook_secrets import simulated_webhook_secret
from arbridge.sync.db import transaction
from arbridge.sync.model import CheckoutSessionRow, Company, Customer, Invoice, WebhookEvent
from arbridge.sync.store import issue_pay_token, open_invoices
from arbridge.worker import drain
from tests.web.conftest import assert_friendly_error, csrf_token, parse

EVENT = {
    "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
    "object": "event",
    "type": "customer.created",
    "created": 1764000000,
    "data": {"object": {"id": "cus_1", "object": "customer"}},
}


def signed(rt, event=EVENT, secret=None, at=None):
    body = json.dumps(event).encode()
    stamp = int(at if at is not None else rt.clock.now().timestamp())
    return body, sign(body, secret or simulated_webhook_secret(rt), stamp)


def events(rt) -> int:
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(WebhookEvent))


def post_webhook(client, body, header):
    return client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


def test_forged_and_stale_deliveries_get_400_and_nothing_else(client, rt, demo_company):
    body, header = signed(rt, secret="whsec_forged")
    assert post_webhook(client, body, header).status_code == 400
    body, header = signed(rt, at=rt.clock.now().timestamp() - 301)
    assert post_webhook(client, body, header).status_code == 400
    assert post_webhook(client, b"{}", "").status_code == 400
    assert events(rt) == 0


def test_a_good_delivery_is_stored_once_and_an_unknown_type_ignored(client, rt, demo_company):
    body, header = signed(rt)
    first = post_webhook(client, body, header)
    again = post_webhook(client, body, header)
    assert first.status_code == again.status_code == 200
    assert first.json == {"received": True, "duplicate": False} and again.json["duplicate"] is True
    drain(rt)
    with rt.sessions() as s:
        assert s.scalar(select(WebhookEvent.status)) == "ignored"


def test_the_webhook_needs_no_csrf_but_the_pay_button_does(client, rt, demo_company):
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        token = issue_pay_token(s, rt.clock, inv)
    assert client.post(f"/pay/{token}/checkout").status_code == 400  # no CSRF token
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CheckoutSessionRow)) == 0


def test_viewing_the_link_never_opens_a_session_and_pay_redirects_303(client, rt, demo_company):
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        token = issue_pay_token(s, rt.clock, inv)
    for _ in range(3):  # a mail scanner, a preview, the customer
        page = client.get(f"/pay/{token}")
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CheckoutSessionRow)) == 0
    doc = parse(page.data)
    assert doc.by_id("pay") is not None and "simulated" in page.data.decode()
    response = client.post(f"/pay/{token}/checkout", data={"csrf_token": csrf_token(page.data)})
    assert (
        response.status_code == 303
        and "/simulated-checkout/cs_sim_" in response.headers["Location"]
    )
    assert response.headers["Cache-Control"] == "no-store"


def test_the_whole_path_through_the_client(client, rt, demo_company):
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        token, invoice_id = issue_pay_token(s, rt.clock, inv), inv.id
    page = client.get(f"/pay/{token}")
    to_checkout = client.post(f"/pay/{token}/checkout", data={"csrf_token": csrf_token(page.data)})
    checkout_url = to_checkout.headers["Location"].replace(rt.settings.base_url, "")
    checkout = client.get(checkout_url)
    back = client.post(
        checkout_url,
        data={"csrf_token": csrf_token(checkout.data), "method": "card", "outcome": "succeed"},
    )
    assert back.status_code == 303 and "/return?session_id=cs_sim_" in back.headers["Location"]
    landed = client.get(
        back.headers["Location"].replace(rt.settings.base_url, ""), follow_redirects=True
    )
    assert parse(landed.data).by_id("state").text == "Paid in full. Thank you!"
    with rt.sessions() as s:
        assert s.get(Invoice, invoice_id).status == "paid"
    # Paying again is refused with the state, not a second charge.
    again = client.post(f"/pay/{token}/checkout", data={"csrf_token": csrf_token(page.data)})
    assert again.status_code == 409 and b"Paid in full" in again.data


def test_a_tampered_token_is_a_plain_404_everywhere(client, rt, demo_company):
    for path in (
        "/pay/not-a-token",
        "/pay/not-a-token/return?session_id=cs_sim_x",
        "/simulated-checkout/cs_sim_nope",
    ):
        response = client.get(path)
        assert response.status_code == 404
        assert_friendly_error(response.data.decode())


def test_a_fresh_signature_from_now_is_accepted_by_the_route(client, rt, demo_company):
    # The route checks against the injected clock; a delivery signed at that instant verifies.
    body, header = signed(rt, at=rt.clock.now().timestamp())
    assert post_webhook(client, body, header).status_code == 200


def test_simulated_checkout_works_with_an_install_webhook_secret_and_no_stripe_key(
    client, rt, demo_company
):
    """ARBRIDGE_STRIPE_WEBHOOK_SECRET set (for a Stripe key to come), no key yet: the demo's
    simulated checkout signed its events with its own secret and the route verified them with
    the install's, so the customer got a 500."""
    rt.settings = rt.settings.with_(stripe_webhook_secret="whsec_install_for_later")
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        token, invoice_id = issue_pay_token(s, rt.clock, inv), inv.id
    page = client.get(f"/pay/{token}")
    to_checkout = client.post(f"/pay/{token}/checkout", data={"csrf_token": csrf_token(page.data)})
    checkout_url = to_checkout.headers["Location"].replace(rt.settings.base_url, "")
    checkout = client.get(checkout_url)
    back = client.post(
        checkout_url,
        data={"csrf_token": csrf_token(checkout.data), "method": "card", "outcome": "succeed"},
    )
    assert back.status_code == 303, back.get_data(as_text=True)
    drain(rt)
    with rt.sessions() as s:
        assert s.get(Invoice, invoice_id).status == "paid"
    # The install's secret still verifies real deliveries at the route.
    body, header = signed(rt, secret="whsec_install_for_later")
    assert post_webhook(client, body, header).status_code == 200


def test_a_signed_event_with_an_absurd_created_is_a_400_and_stores_nothing(
    client, rt, demo_company, caplog
):
    for created in (253402300800, 10**30, -1, "2026-11-24", 1.5e9, True, None):
        event = {**EVENT, "id": f"evt_created_{created!r}", "created": created}
        body, header = signed(rt, event)
        response = post_webhook(client, body, header)
        assert response.status_code == 400, (created, response.status_code)
        assert "created" in response.json["error"]
    assert events(rt) == 0
    assert "created" in caplog.text
    # A year-9999 event is absurd too: nothing from the far future is stored.
    body, header = signed(rt, {**EVENT, "id": "evt_9999", "created": 253402214400})
    assert post_webhook(client, body, header).status_code == 400
    assert events(rt) == 0


def _to_checkout(client, rt, demo_company):
    """The customer presses Pay; returns (token, the simulated checkout's path)."""
    with transaction(rt.sessions) as s:
        inv = next(
            i
            for i in open_invoices(s, demo_company.id)
            if i.currency == "USD" and not i.payment_pending
        )
        token = issue_pay_token(s, rt.clock, inv)
    page = client.get(f"/pay/{token}")
    to_checkout = client.post(f"/pay/{token}/checkout", data={"csrf_token": csrf_token(page.data)})
    return token, to_checkout.headers["Location"].replace(rt.settings.base_url, "")


def _finish(client, rt, checkout_path, method):
    checkout = client.get(checkout_path)
    back = client.post(
        checkout_path,
        data={"csrf_token": csrf_token(checkout.data), "method": method, "outcome": "succeed"},
    )
    return back.headers["Location"].replace(rt.settings.base_url, "")


def _flash(page) -> str:
    return " ".join(p.text for p in parse(page.data).find_all("p", cls="flash"))


def test_the_return_page_thanks_for_a_card_payment_that_was_paid(client, rt, demo_company):
    _token, checkout = _to_checkout(client, rt, demo_company)
    landed = client.get(_finish(client, rt, checkout, "card"), follow_redirects=True)
    assert "Your payment was received" in _flash(landed)


def test_the_return_page_says_a_bank_payment_has_only_started(client, rt, demo_company):
    _token, checkout = _to_checkout(client, rt, demo_company)
    landed = client.get(_finish(client, rt, checkout, "us_bank_account"), follow_redirects=True)
    said = _flash(landed)
    assert "bank payment has started" in said and "few business days" in said
    assert "was received" not in said
    assert parse(landed.data).by_id("state").text.startswith("Payment pending")


def test_the_return_page_for_an_unpaid_session_says_nothing_was_charged(client, rt, demo_company):
    token, checkout = _to_checkout(client, rt, demo_company)
    session_id = checkout.rsplit("/", 1)[-1]
    # The return address reached without paying (typed in, or a back button).
    landed = client.get(f"/pay/{token}/return?session_id={session_id}", follow_redirects=True)
    said = _flash(landed)
    assert "not completed" in said and "nothing was charged" in said
    assert "Thank you" not in said
    assert parse(landed.data).by_id("pay") is not None  # the way back to pay


def test_the_return_page_for_an_expired_session_says_so_and_offers_to_pay(
    client, rt, demo_company, clock
):
    from datetime import timedelta

    token, checkout = _to_checkout(client, rt, demo_company)
    session_id = checkout.rsplit("/", 1)[-1]
    clock.advance(timedelta(hours=2))
    landed = client.get(f"/pay/{token}/return?session_id={session_id}", follow_redirects=True)
    said = _flash(landed)
    assert "expired" in said and "nothing was charged" in said and "Thank you" not in said
    assert parse(landed.data).by_id("pay") is not None


def test_cancelling_the_checkout_comes_back_to_say_nothing_was_charged(client, rt, demo_company):
    token, checkout = _to_checkout(client, rt, demo_company)
    [cancel] = [
        a for a in parse(client.get(checkout).data).find_all("a") if a.text == "Cancel and go back"
    ]
    landed = client.get(
        cancel.attrs["href"].replace(rt.settings.base_url, ""), follow_redirects=True
    )
    said = _flash(landed)
    assert "cancelled" in said and "nothing was charged" in said and "Thank you" not in said
    assert parse(landed.data).by_id("pay") is not None
    assert landed.request.path == f"/pay/{token}"


def test_a_checkout_opened_before_the_business_stopped_taking_cards_was_reused(
    client, rt, demo_company
):
    token, first = _to_checkout(client, rt, demo_company)
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        company.settings = {
            **company.settings,
            "payments": {**(company.settings.get("payments") or {}), "accept_card": False},
        }
    page = client.get(f"/pay/{token}")
    again = client.post(f"/pay/{token}/checkout", data={"csrf_token": csrf_token(page.data)})
    second = again.headers["Location"].replace(rt.settings.base_url, "")
    assert second != first  # a new session, offering only what the business takes now
    with rt.sessions() as s:
        statuses = s.scalars(select(CheckoutSessionRow.status).order_by(CheckoutSessionRow.id))
        assert list(statuses) == ["expired", "open"]


def test_paying_a_statement_of_many_invoices_kept_a_basis_longer_than_its_column(
    client, rt, demo_company
):
    # The session's basis listed each invoice with its balance: 200 characters hold ten or so,
    # and PostgreSQL refused the row (a 500 on Pay) for a customer with more open invoices.
    from arbridge.sync.store import issue_statement_token

    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        customer_id = inv.customer_id
        for n in range(25):
            s.add(
                Invoice(
                    company_id=demo_company.id,
                    customer_id=customer_id,
                    source="demo",
                    source_id=f"MANY{n}",
                    number=f"MANY-{n:04d}",
                    issued_on=inv.issued_on,
                    due_on=inv.due_on,
                    currency="USD",
                    exchange_rate=inv.exchange_rate,
                    total_minor=123_456_78,
                    ledger_balance_minor=123_456_78,
                    status="open",
                    synced_at=rt.clock.now(),
                )
            )
        s.flush()
        token = issue_statement_token(s, rt.clock, s.get(Customer, customer_id))
    page = client.get(f"/pay/{token}")
    to_checkout = client.post(f"/pay/{token}/checkout", data={"csrf_token": csrf_token(page.data)})
    assert to_checkout.status_code == 303
    with rt.sessions() as s:
        row = s.scalars(select(CheckoutSessionRow)).one()
        assert len(row.invoice_ids) > 25 and len(row.basis) <= 200
