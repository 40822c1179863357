"""The customer's receipt, as it arrives at a real SMTP server (aiosmtpd): each invoice with what
was applied to it, the amount, the method, the date and time in the business's timezone with the
zone named, the reference, and the business's contact (replies go to the owner)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from arbridge.money import Money
from arbridge.runtime import Runtime
from arbridge.services.payments import plans
from arbridge.services.payments.checkout import start_checkout
from arbridge.services.payments.simulated import simulated_stripe
from arbridge.sync.db import transaction
from arbridge.sync.model import CollectedPayment, Company, Customer, Invoice, Plan
from arbridge.sync.store import (
    customer_email,
    issue_pay_token,
    issue_statement_token,
    open_invoices,
)
from arbridge.worker import drain
from tests.contract.email.server import smtp_server

OWNER = "owner@acme-supply.example"


@pytest.fixture
def smtp(tmp_path):
    with smtp_server(tmp_path) as server:
        yield server


@pytest.fixture
def rt(settings, clock, smtp):
    """The runtime every fixture uses (the demo company's too), sending through the SMTP server."""
    runtime = Runtime.open(settings.with_(smtp_url=smtp.url), clock)
    yield runtime
    runtime.close()


def receipt(smtp, to: str):
    [msg] = [
        r.message
        for r in smtp.inbox.messages
        if str(r.message["To"]) == to and str(r.message["Subject"]).startswith("Receipt")
    ]
    return msg


def plain(msg) -> str:
    """The plain-text version (a receipt has an HTML version too)."""
    return msg.get_body(("plain",)).get_content().replace("\r\n", "\n")


def paid(rt) -> tuple[CollectedPayment, list[tuple[str, int]]]:
    """The one collected payment, and (invoice number, amount applied) for each invoice."""
    with rt.sessions() as s:
        [row] = s.scalars(select(CollectedPayment)).all()
        numbers = dict(s.execute(select(Invoice.id, Invoice.number)).tuples().all())
        lines = [(numbers[a.invoice_id], a.amount_minor) for a in row.allocations]
        s.expunge(row)
        return row, lines


def test_a_statement_paid_by_card_late_in_the_evening_lists_each_invoice_in_chicago_time(
    rt, demo_company, clock, smtp
):
    with rt.sessions() as s:
        by_customer: dict[int, list[Invoice]] = {}
        for inv in open_invoices(s, demo_company.id):
            by_customer.setdefault(inv.customer_id, []).append(inv)
        customer_id, mine = max(
            (
                (c, invs)
                for c, invs in by_customer.items()
                if all(i.currency == "USD" and not i.payment_pending for i in invs)
            ),
            key=lambda kv: len(kv[1]),
        )
        assert len(mine) >= 2
        to = customer_email(s, customer_id)
        assert to
    with transaction(rt.sessions) as s:
        token = issue_statement_token(s, rt.clock, s.get(Customer, customer_id))
    # 03:00 UTC on the 25th is 21:00 on the 24th in Chicago, the business's timezone.
    clock.advance(timedelta(hours=12))
    url = start_checkout(rt, token)
    simulated_stripe(rt).complete(url.rsplit("/", 1)[-1], "card", "succeed")
    drain(rt)

    msg = receipt(smtp, to)
    row, lines = paid(rt)
    body = plain(msg)
    total = Money.from_minor(row.amount_minor, "USD").format()
    assert str(msg["Subject"]) == f"Receipt from Acme Supply Co.: {total}"
    assert str(msg["Reply-To"]) == OWNER
    assert len(lines) == len(mine) >= 2
    for number, minor in lines:
        assert f"  Invoice {number}: {Money.from_minor(minor, 'USD').format()}" in body, body
    assert f"\nAmount: {total}\n" in body
    assert "\nMethod: Card\n" in body
    assert "\nDate: Nov 24, 2026, 21:00 CST\n" in body, body
    assert f"\nReference: {row.payment_intent_id}\n" in body
    assert f"write to Acme Supply Co. at {OWNER}." in body
    assert "Co.." not in body
    # An HTML version too, readable on a phone, saying the same.
    html = msg.get_body(("html",)).get_content()
    assert "max-width:600px" in html and 'name="viewport"' in html
    assert f"Reference: {row.payment_intent_id}" in html and "Method: Card" in html
    for number, _minor in lines:
        assert f"Invoice {number}: " in html


def test_a_bank_payment_s_receipt_names_the_bank_account_and_the_day_it_cleared(
    rt, demo_company, clock, smtp
):
    with rt.sessions() as s:
        inv = next(
            i
            for i in open_invoices(s, demo_company.id)
            if i.currency == "USD" and i.open_balance_minor == i.total_minor
        )
        to = customer_email(s, inv.customer_id)
    with transaction(rt.sessions) as s:
        token = issue_pay_token(s, rt.clock, s.get(Invoice, inv.id))
    url = start_checkout(rt, token)
    simulated_stripe(rt).complete(url.rsplit("/", 1)[-1], "us_bank_account", "succeed")
    drain(rt)
    assert not [r for r in smtp.inbox.messages if str(r.message["To"]) == to]  # pending
    clock.advance(timedelta(seconds=21))
    drain(rt)

    body = plain(receipt(smtp, to))
    amount = Money.from_minor(inv.open_balance_minor, "USD").format()
    assert f"  Invoice {inv.number}: {amount}\n" in body, body
    assert "\nMethod: Bank account (ACH debit)\n" in body
    assert "\nDate: Nov 24, 2026, 09:00 CST\n" in body, body


def test_a_plan_s_last_installment_shows_the_fee_as_the_plan_fee_not_as_unapplied(
    rt, demo_company, smtp, clock
):
    with rt.sessions() as s:
        inv = next(
            i
            for i in open_invoices(s, demo_company.id)
            if i.currency == "USD"
            and i.open_balance_minor == i.total_minor
            and i.total_minor >= 40000
        )
        to = customer_email(s, inv.customer_id)
    with transaction(rt.sessions) as s:
        company = s.get(Company, demo_company.id)
        company.settings = {
            **company.settings,
            "plans": {**company.settings["plans"], "fee_amount": "15.00"},
        }
    made = plans.make_offer(
        rt,
        company_id=demo_company.id,
        invoice_ids=[inv.id],
        installments=2,
        every="month",
        deposit_percent=Decimal(0),
    )
    token = made.link.rsplit("/pay/", 1)[1].split("/")[0]
    with rt.sessions() as s:
        version = s.get(Plan, made.plan_id).agreement_version
    url = plans.agree_to_offer(
        rt, token, made.plan_id, agreed=True, version=version, ip="203.0.113.9", user_agent="t"
    )
    simulated_stripe(rt).complete(url.rsplit("/", 1)[1], "card", "succeed", "succeeds")
    drain(rt)
    # A month on, the second installment pays the rest of the invoice and the fee, whose own
    # ledger invoice has not been synced back yet.
    clock.advance(timedelta(days=31))
    for _ in range(3):
        drain(rt)

    with rt.sessions() as s:
        [row] = s.scalars(
            select(CollectedPayment).where(CollectedPayment.unapplied_minor > 0)
        ).all()
        applied = [a.amount_minor for a in row.allocations]
    assert row.unapplied_minor == 1500
    [second] = [
        plain(r.message)
        for r in smtp.inbox.messages
        if str(r.message["To"]) == to and row.payment_intent_id in plain(r.message)
    ]
    assert "  Installment plan fee: $15.00\n" in second, second
    assert "Not applied to any invoice" not in second
    [minor] = applied
    assert f"  Invoice {inv.number}: {Money.from_minor(minor, 'USD').format()}\n" in second
