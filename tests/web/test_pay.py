"""The customer's payment page: reached by an unguessable link, the amount always from the server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from arbridge.sync.db import transaction
from arbridge.sync.model import Activity, Connection, Invoice, PayToken
from arbridge.sync.store import company_today, hash_token, open_invoices
from tests.conftest import sync_now
from tests.web.conftest import assert_friendly_error, csrf_token, parse


@pytest.fixture
def overdue_invoice(rt, demo_company) -> Invoice:
    """An overdue USD invoice with a part-paid or full balance and a number."""
    today = company_today(demo_company, rt.clock)
    with rt.sessions() as s:
        inv = next(
            i
            for i in open_invoices(s, demo_company.id)
            if i.due_on < today - timedelta(days=10) and i.currency == "USD" and i.number
        )
        s.expunge(inv)
        return inv


def _create_link(owner_client, inv: Invoice) -> str:
    page = owner_client.get(f"/c/demo/invoices/{inv.id}")
    assert page.status_code == 200
    doc = parse(page.data)
    assert doc.by_id("pay-link") is None
    form = doc.find("form", action=f"/c/demo/invoices/{inv.id}/pay-link")
    assert form is not None and form.find("button").text == "Create payment link"
    response = owner_client.post(form.attrs["action"], data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 303
    link = parse(owner_client.get(response.headers["Location"]).data).by_id("pay-link")
    assert link is not None
    assert link.attrs["href"] == link.text
    assert link.text.startswith("http://127.0.0.1:5000/pay/")
    return link.attrs["href"].removeprefix("http://127.0.0.1:5000")


@pytest.fixture
def pay_path(owner_client, overdue_invoice) -> str:
    return _create_link(owner_client, overdue_invoice)


@pytest.fixture
def customer(app):
    """The customer's browser: a separate client, never signed in."""
    return app.test_client()


def _token(path: str) -> str:
    return path.removeprefix("/pay/")


def _refused(response, *absent: str) -> None:
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "Page not found" in body
    assert "This link is not valid" in body
    assert_friendly_error(body, "Acme Supply Co.", 'id="amount-due"', *absent)


def test_owner_creates_a_link_stored_only_as_a_hash(owner_client, rt, overdue_invoice, pay_path):
    token = _token(pay_path)
    assert len(token) >= 40
    with rt.sessions() as s:
        rows = s.scalars(select(PayToken).where(PayToken.token_hash == hash_token(token))).all()
        assert len(rows) == 1
        assert rows[0].token_hash == hash_token(token)
        assert rows[0].invoice_id == overdue_invoice.id
        assert rows[0].company_id == overdue_invoice.company_id
        assert token not in str(s.scalars(select(Activity.data)).all())
        kinds = s.scalars(select(Activity.kind).where(Activity.invoice_id == overdue_invoice.id))
        assert "pay_link.created" in kinds.all()


def test_pay_page_shows_the_invoice_and_the_amount_due(customer, overdue_invoice, pay_path):
    response = customer.get(pay_path)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    body = response.get_data(as_text=True)
    doc = parse(body)
    assert "Acme Supply Co." in doc.find("header").text
    assert f"Invoice {overdue_invoice.number}" in doc.find("h1").text
    assert doc.by_id("amount-due").text == overdue_invoice.balance.format()
    assert doc.by_id("state") is None
    assert "days ago" in body
    # The customer is not signed in to anything by following the link.
    assert customer.get("/c/demo/").headers["Location"] == "/signed-out"


def test_query_string_tricks_do_not_change_the_amount(customer, overdue_invoice, pay_path):
    expected = overdue_invoice.balance.format()
    for query in ("?amount=1", "?amount=0.01&currency=JPY", "?balance_minor=100", "?status=paid"):
        response = customer.get(pay_path + query)
        assert response.status_code == 200, query
        doc = parse(response.data)
        assert doc.by_id("amount-due").text == expected, query
        assert doc.by_id("state") is None


def test_the_amount_follows_the_ledger(customer, rt, overdue_invoice, pay_path):
    with transaction(rt.sessions) as s:
        inv = s.get(Invoice, overdue_invoice.id)
        inv.ledger_balance_minor = 12_345
    doc = parse(customer.get(pay_path).data)
    assert doc.by_id("amount-due").text == "$123.45"


@pytest.mark.parametrize("position", [0, 10, -1])
def test_a_tampered_link_is_a_plain_404(customer, overdue_invoice, pay_path, position):
    token = _token(pay_path)
    chars = list(token)
    chars[position] = "A" if chars[position] != "A" else "B"
    tampered = "".join(chars)
    assert tampered != token
    _refused(customer.get(f"/pay/{tampered}"), overdue_invoice.number)


@pytest.mark.parametrize("suffix", ["x", "/", "%00", "'--"])
def test_a_lengthened_link_is_refused(customer, overdue_invoice, pay_path, suffix):
    response = customer.get(pay_path + suffix)
    assert response.status_code in (404, 308)
    if response.status_code == 404:
        _refused(response, overdue_invoice.number)


@pytest.mark.parametrize("token", ["", "a", "x" * 201, "x" * 5000])
def test_odd_tokens_are_refused(customer, demo_company, token):
    response = customer.get(f"/pay/{token}")
    assert response.status_code == 404
    assert_friendly_error(response.get_data(as_text=True), "Acme Supply Co.")


def test_a_revoked_link_is_a_plain_404(customer, rt, overdue_invoice, pay_path):
    assert customer.get(pay_path).status_code == 200
    with transaction(rt.sessions) as s:
        row = s.scalar(select(PayToken).where(PayToken.token_hash == hash_token(_token(pay_path))))
        row.revoked_at = rt.clock.now()
    _refused(customer.get(pay_path), overdue_invoice.number)


@pytest.mark.parametrize(
    ("status", "balance_minor", "state"),
    [
        ("paid", 0, "Paid in full"),
        ("voided", 0, "This invoice was cancelled. Nothing is due."),
        ("open", 0, "Paid in full"),
        ("deleted", 0, "This invoice is no longer open."),
        ("deleted", 5_00, "This invoice is no longer open."),
    ],
)
def test_a_settled_invoice_shows_its_state_not_an_amount(
    customer, rt, overdue_invoice, pay_path, status, balance_minor, state
):
    with transaction(rt.sessions) as s:
        inv = s.get(Invoice, overdue_invoice.id)
        inv.status, inv.ledger_balance_minor = status, balance_minor
    response = customer.get(pay_path)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    doc = parse(response.data)
    assert doc.by_id("amount-due") is None
    assert state in doc.by_id("state").text
    if status != "open":
        assert "days ago" not in doc.text


def test_a_paid_invoice_shows_its_state_even_with_a_stale_balance(
    customer, rt, overdue_invoice, pay_path
):
    """Paid wins over a balance the ledger has not zeroed yet: never ask for money twice."""
    with transaction(rt.sessions) as s:
        s.get(Invoice, overdue_invoice.id).status = "paid"
    doc = parse(customer.get(pay_path).data)
    assert doc.by_id("amount-due") is None
    assert "Paid in full" in doc.by_id("state").text


def test_a_voided_invoice_with_a_stale_balance_asks_for_nothing(
    customer, rt, overdue_invoice, pay_path
):
    with transaction(rt.sessions) as s:
        s.get(Invoice, overdue_invoice.id).status = "voided"
    doc = parse(customer.get(pay_path).data)
    assert doc.by_id("amount-due") is None
    assert "cancelled" in doc.by_id("state").text


def test_owner_page_offers_no_link_for_a_settled_invoice(owner_client, rt, overdue_invoice):
    with transaction(rt.sessions) as s:
        inv = s.get(Invoice, overdue_invoice.id)
        inv.status, inv.ledger_balance_minor = "paid", 0
    doc = parse(owner_client.get(f"/c/demo/invoices/{overdue_invoice.id}").data)
    assert doc.find("form", action=f"/c/demo/invoices/{overdue_invoice.id}/pay-link") is None


def test_creating_the_link_again_keeps_the_one_that_works(owner_client, customer, overdue_invoice):
    """Issue 13: the invoice page shows its link on every visit, so a second click must not
    pile up links: it keeps the live one (a new one only after revoking, test_pay_link_page)."""
    first = _create_link(owner_client, overdue_invoice)
    page = owner_client.get(f"/c/demo/invoices/{overdue_invoice.id}")
    again = owner_client.post(
        f"/c/demo/invoices/{overdue_invoice.id}/pay-link",
        data={"csrf_token": csrf_token(page.data)},
        follow_redirects=True,
    )
    second = parse(again.data).by_id("pay-link").attrs["href"].removeprefix("http://127.0.0.1:5000")
    assert second == first
    assert customer.get(first).status_code == 200


def test_an_invoice_voided_in_the_ledger_shows_as_cancelled(
    customer, rt, overdue_invoice, pay_path
):
    """End to end through the sync: the bookkeeper voids the invoice, the customer's page follows."""
    with rt.sessions() as s:
        conn = s.scalar(
            select(Connection).where(Connection.company_id == overdue_invoice.company_id)
        )
        s.expunge(conn)
    rt.demo_ledger(conn.tenant_id).void_invoice(overdue_invoice.source_id)
    sync_now(rt, conn)
    doc = parse(customer.get(pay_path).data)
    assert doc.by_id("amount-due") is None
    assert doc.by_id("state").text == "This invoice was cancelled. Nothing is due."


def test_a_statement_link_whose_invoices_were_all_paid_says_so_and_opens_nothing(
    customer, rt, overdue_invoice
):
    from arbridge.sync.model import CheckoutSessionRow, Customer
    from arbridge.sync.store import issue_statement_token

    with transaction(rt.sessions) as s:
        token = issue_statement_token(s, rt.clock, s.get(Customer, overdue_invoice.customer_id))
    page = customer.get(f"/pay/{token}")
    assert page.status_code == 200 and parse(page.data).by_id("pay") is not None
    csrf = csrf_token(page.data)
    # Paid through another link, or by cheque, and synced: nothing is open any more.
    with transaction(rt.sessions) as s:
        for inv in s.scalars(
            select(Invoice).where(
                Invoice.customer_id == overdue_invoice.customer_id, Invoice.status == "open"
            )
        ):
            inv.status, inv.ledger_balance_minor = "paid", 0
    page = customer.get(f"/pay/{token}")
    assert page.status_code == 200
    doc = parse(page.data)
    assert doc.by_id("pay") is None and "Paid in full" in doc.by_id("state").text
    refused = customer.post(f"/pay/{token}/checkout", data={"csrf_token": csrf})
    assert refused.status_code == 409 and b"nothing to pay" in refused.data
    with rt.sessions() as s:
        assert s.scalars(select(CheckoutSessionRow)).first() is None


def test_one_pending_bank_payment_left_a_statements_other_invoices_unpayable(
    customer, rt, overdue_invoice
):
    """One invoice's bank payment on its way (a plan's debit, another link's ACH) made the whole
    statement "pending": no amount due and no Pay button for the rest of the balance."""
    from arbridge.sync.model import Customer
    from arbridge.sync.store import issue_statement_token

    with transaction(rt.sessions) as s:
        token = issue_statement_token(s, rt.clock, s.get(Customer, overdue_invoice.customer_id))
        owed = [
            i
            for i in s.scalars(
                select(Invoice).where(Invoice.customer_id == overdue_invoice.customer_id)
            )
            if i.is_open and i.currency == overdue_invoice.currency
        ]
        assert len(owed) >= 2, "the customer needs another open invoice"
        pending = s.get(Invoice, overdue_invoice.id)
        pending.payment_pending = True
        rest = sum(i.open_balance_minor for i in owed if i.id != pending.id)
        number = pending.number
    doc = parse(customer.get(f"/pay/{token}").data)
    assert doc.by_id("pay") is not None
    assert doc.by_id("amount-due").text.replace(",", "").endswith(f"{rest / 100:.2f}")
    listed = [row.find("td").text for row in doc.by_id("statement").find_all("tr")[1:]]
    assert number not in listed
    assert number in doc.by_id("pending").text and "on its way" in doc.by_id("pending").text


@pytest.mark.parametrize(
    "asked",
    ["installments=99&every=month", "installments=abc", "installments=2&every=decade"],
)
def test_a_plan_choice_not_offered_said_no_plan_was_available_or_was_a_bare_400(
    customer, rt, overdue_invoice, asked
):
    from arbridge.sync.store import issue_pay_token

    with transaction(rt.sessions) as s:
        token = issue_pay_token(s, rt.clock, s.get(Invoice, overdue_invoice.id))
    usual = parse(customer.get(f"/pay/{token}/plan").data)
    assert usual.by_id("plan-schedule") is not None, "the demo offers plans on this invoice"
    page = customer.get(f"/pay/{token}/plan?{asked}")
    assert page.status_code == 200
    doc = parse(page.data)
    assert doc.by_id("plan-unavailable") is None
    assert doc.by_id("plan-schedule") is not None  # the usual choice, to pick from
    said = doc.find("p", cls="error").text
    assert said.startswith(("Choose", "That frequency")), said


def test_two_open_promises_said_the_same_sentence_twice_on_the_pay_page(
    customer, rt, overdue_invoice
):
    from arbridge.sync.model import InvoiceHold
    from arbridge.sync.store import issue_pay_token

    today = rt.clock.now().date()
    with transaction(rt.sessions) as s:
        token = issue_pay_token(s, rt.clock, s.get(Invoice, overdue_invoice.id))
        for days, by in ((5, "customer"), (9, "owner")):  # a promise, then one taken on a call
            s.add(
                InvoiceHold(
                    company_id=overdue_invoice.company_id,
                    invoice_id=overdue_invoice.id,
                    kind="promise",
                    promised_on=today + timedelta(days=days),
                    created_by=by,
                    created_at=rt.clock.now(),
                )
            )
    doc = parse(customer.get(f"/pay/{token}").data)  # by_id refuses an id used twice
    said = doc.by_id("hold-promise").text
    assert (today + timedelta(days=9)).strftime("%b") in said and "Thank you" in said
