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
from arbridge.sync.store import company_today, ledger_connection, open_invoices
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


def pay_in_ledger(rt, company, invoice, amount: Decimal) -> None:
    """A payment entered in the ledger directly (a cheque), then synced."""
    from arbridge.connectors.base import PaymentLine, PaymentWriteBack

    with rt.sessions() as s:
        conn = ledger_connection(s, company.id)
        customer = s.get(Invoice, invoice.id).customer
        source = customer.source_id
    rt.demo_ledger(conn.tenant_id).post_payment(
        PaymentWriteBack(
            idempotency_key=f"cheque:{invoice.id}:{amount}",
            customer_source_id=source,
            currency="USD",
            amount=amount,
            received_on=company_today(company, rt.clock),
            reference="cheque 1042",
            lines=(PaymentLine(invoice.source_id, amount),),
        )
    )
    sync_now(rt, conn)


def test_a_payment_made_elsewhere_shrinks_the_last_installments_and_never_overcharges(
    rt, demo_company, usd_invoice
):
    made = svc.make_offer(
        rt,
        company_id=demo_company.id,
        invoice_ids=[usd_invoice.id],
        installments=4,
        every="month",
        deposit_percent=Decimal(0),
    )
    agree_and_pay(rt, made)
    drain(rt)
    first = made.proposal.installments[0].amount.minor
    each = made.proposal.installments[1].amount.minor
    # The customer mails a cheque for one and a half installments.
    cheque = Decimal(each * 3 // 2) / 100
    pay_in_ledger(rt, demo_company, usd_invoice, cheque)
    from arbridge.services.payments.plan_runs import reconcile_company_plans

    assert reconcile_company_plans(rt, demo_company.id) == 1
    row = plan_row(rt, made.plan_id)
    statuses = [i.status for i in row.plan.installments]
    assert statuses == ["paid", "scheduled", "scheduled", "dropped"]
    left = usd_invoice.open_balance_minor - first - int(cheque * 100)
    assert sum(i.amount_minor for i in row.plan.installments[1:3]) == left
    assert row.plan.installments[1].amount_minor == each  # the earlier dates keep their amounts
    for _ in range(3):
        days(rt, 31)
    row = plan_row(rt, made.plan_id)
    assert row.plan.status == "completed"
    with rt.sessions() as s:
        charged = sum(
            p.amount_minor
            for p in s.scalars(
                select(CollectedPayment).where(CollectedPayment.status == "succeeded")
            )
        )
        assert charged + int(cheque * 100) == usd_invoice.open_balance_minor
        assert s.get(Invoice, usd_invoice.id).open_balance_minor == 0


def test_a_bank_debit_that_fails_four_days_later_is_retried_and_the_customer_can_pay_it(
    rt, demo_company, usd_invoice
):
    made = svc.make_offer(
        rt,
        company_id=demo_company.id,
        invoice_ids=[usd_invoice.id],
        installments=2,
        every="fortnight",
        deposit_percent=Decimal(0),
    )
    _token, outcome = agree_and_pay(rt, made, method="us_bank_account", saved="fails")
    assert outcome == "pending"
    drain(rt)
    days(rt, 1)  # the first debit clears (the simulation's checkout settles in seconds)
    row = plan_row(rt, made.plan_id)
    assert row.plan.status == "current" and row.plan.installments[0].status == "paid"
    days(rt, 14)  # the second is debited: processing for four days
    assert plan_row(rt, made.plan_id).plan.installments[1].status == "processing"
    days(rt, 4)
    second = plan_row(rt, made.plan_id).plan.installments[1]
    assert second.status == "failed" and "not enough money" in (second.last_error or "")
    with rt.sessions() as s:
        mail = s.scalars(
            select(MailMessage).where(MailMessage.kind == "plan").order_by(MailMessage.id.desc())
        ).first()
        assert "did not go through" in mail.subject and "/pay/" in mail.text_body
        link = mail.text_body.split("/pay/")[1].split("/")[0]
    # The customer pays it by card through the email's link: charged once, the plan completes.
    url = svc.installment_checkout(rt, link, made.plan_id, 2)
    back = simulated_stripe(rt).complete(url.rsplit("/", 1)[1], "card", "succeed", "succeeds")
    from arbridge.services.payments.checkout import handle_checkout_return

    assert handle_checkout_return(rt, link, back.split("session_id=")[1]) == "paid"
    days(rt, 10)  # past every retry date: nothing more is charged
    row = plan_row(rt, made.plan_id)
    assert row.plan.status == "completed"
    assert [i.status for i in row.plan.installments] == ["paid", "paid"]
    with rt.sessions() as s:
        ok = s.scalars(select(CollectedPayment).where(CollectedPayment.status == "succeeded")).all()
        assert sum(p.amount_minor for p in ok) == usd_invoice.open_balance_minor


def test_a_statement_plan_covers_several_invoices_oldest_first(rt, demo_company):
    from arbridge.sync.store import issue_statement_token

    with rt.sessions() as s:
        invoices = open_invoices(s, demo_company.id)
        by_customer: dict[int, list] = {}
        for i in invoices:
            if i.currency == "USD" and not i.payment_pending:
                by_customer.setdefault(i.customer_id, []).append(i)
        customer_id, mine = max(by_customer.items(), key=lambda kv: len(kv[1]))
        assert len(mine) >= 2
    with transaction(rt.sessions) as s:
        from arbridge.sync.model import Customer

        token = issue_statement_token(s, rt.clock, s.get(Customer, customer_id))
    from arbridge.services.payments.quote import quote
    from arbridge.sync.store import find_pay_token

    with rt.sessions() as s:
        q = quote(rt, s, find_pay_token(s, token))
        today = company_today(demo_company, rt.clock)
        choice = svc.plan_choice(s, q, today)
        assert choice.offer is not None, choice.eligibility
        proposal = svc.propose_for_customer(choice, 2, "month", today)
        version = proposal.agreement.version
        owed = q.balance.minor
        covered = sorted(i.id for i in q.invoices)
    url = svc.choose_and_agree(
        rt,
        token,
        installments=2,
        every="month",
        agreed=True,
        version=version,
        ip="192.0.2.1",
        user_agent="t",
    )
    simulated_stripe(rt).complete(url.rsplit("/", 1)[1], "card", "succeed", "succeeds")
    drain(rt)
    with rt.sessions() as s:
        plan = s.scalars(select(Plan).order_by(Plan.id.desc())).first()
        assert sorted(pi.invoice_id for pi in plan.invoices) == covered
        assert plan.balance_minor == owed
        [pay] = s.scalars(select(CollectedPayment)).all()
        # The first installment went to the oldest invoice first.
        oldest = min((s.get(Invoice, i) for i in covered), key=lambda i: (i.issued_on, i.id))
        allocated = {a.invoice_id: a.amount_minor for a in pay.allocations}
        assert allocated.get(oldest.id) == min(
            pay.amount_minor, oldest.open_balance_minor + allocated.get(oldest.id, 0)
        )


def test_invoices_on_a_current_plan_get_no_overdue_reminders(rt, demo_company):
    from arbridge.services.reminders.preview import preview

    def decision(inv_id):
        day = preview(rt, demo_company, None).loaded.day
        return next((d for d in day.decisions if d.invoice.invoice_id == inv_id), None)

    with rt.sessions() as s:
        today = company_today(demo_company, rt.clock)
        candidates = [
            i
            for i in open_invoices(s, demo_company.id)
            if i.currency == "USD" and not i.payment_pending
        ]
    overdue = next(
        i for i in candidates if (d := decision(i.id)) is not None and d.step is not None
    )
    made = svc.make_offer(
        rt, company_id=demo_company.id, invoice_ids=[overdue.id], installments=2, every="month"
    )
    # An offer alone holds nothing back: the customer has not agreed yet.
    assert decision(overdue.id).step is not None
    agree_and_pay(rt, made)
    drain(rt)
    held = decision(overdue.id)
    assert held is not None and held.step is None and "installment plan" in held.reason
    assert today == company_today(demo_company, rt.clock)
    # Cancelled, the plan holds nothing back any more: the sequence takes over what is left.
    svc.owner_change(rt, demo_company.id, made.plan_id, "cancel")
    resumed = decision(overdue.id)
    assert resumed is not None and "installment plan" not in resumed.reason


def test_the_customer_cancels_future_charges_and_a_paused_plan_charges_nothing(
    rt, demo_company, usd_invoice
):
    made = svc.make_offer(
        rt,
        company_id=demo_company.id,
        invoice_ids=[usd_invoice.id],
        installments=3,
        every="week",
        deposit_percent=Decimal(0),
    )
    token, _ = agree_and_pay(rt, made)
    drain(rt)
    svc.owner_change(rt, demo_company.id, made.plan_id, "pause")
    days(rt, 8)
    row = plan_row(rt, made.plan_id)
    assert row.plan.status == "paused" and row.plan.installments[1].status == "scheduled"
    svc.owner_change(rt, demo_company.id, made.plan_id, "resume")
    days(rt, 1)
    assert plan_row(rt, made.plan_id).plan.installments[1].status == "paid"
    svc.cancel_by_customer(rt, token, made.plan_id)
    days(rt, 14)
    row = plan_row(rt, made.plan_id)
    assert row.plan.status == "cancelled"
    assert [i.status for i in row.plan.installments] == ["paid", "paid", "cancelled"]


def test_two_tabs_two_plans_the_first_paid_runs_and_the_other_tab_can_no_longer_pay(
    rt, demo_company, usd_invoice
):
    from arbridge.errors import Rejected
    from arbridge.services.payments.quote import quote
    from arbridge.sync.store import find_pay_token, issue_pay_token

    with transaction(rt.sessions) as s:
        token = issue_pay_token(s, rt.clock, s.get(Invoice, usd_invoice.id))
    with rt.sessions() as s:
        q = quote(rt, s, find_pay_token(s, token))
        today = company_today(demo_company, rt.clock)
        proposal = svc.propose_for_customer(svc.plan_choice(s, q, today), 2, "month", today)
        version = proposal.agreement.version
    urls = [
        svc.choose_and_agree(
            rt,
            token,
            installments=n,
            every="month",
            agreed=True,
            version=version,
            ip=None,
            user_agent=None,
        )
        for n in (2, 3)
    ]
    sim = simulated_stripe(rt)
    sim.complete(urls[1].rsplit("/", 1)[1], "card", "succeed", "succeeds")
    drain(rt)
    drain(rt)  # the other tab's Checkout is closed at Stripe through the outbox
    with pytest.raises(Rejected):
        sim.complete(urls[0].rsplit("/", 1)[1], "card", "succeed", "succeeds")
    with rt.sessions() as s:
        plans = s.scalars(select(Plan).order_by(Plan.id)).all()
        assert [p.status for p in plans] == ["cancelled", "current"]
        assert plans[0].end_reason == f"replaced by plan {plans[1].id}"
        [paid] = s.scalars(select(CollectedPayment).where(CollectedPayment.status == "succeeded"))
        assert paid.amount_minor == plans[1].installments[0].amount_minor


def test_a_plan_fee_becomes_its_own_ledger_invoice_and_the_installments_pay_it(
    rt, demo_company, usd_invoice
):
    with transaction(rt.sessions) as s:
        company = s.get(type(demo_company), demo_company.id)
        company.settings = {
            **company.settings,
            "plans": {**company.settings["plans"], "fee_amount": "15.00"},
        }
    made = svc.make_offer(
        rt,
        company_id=demo_company.id,
        invoice_ids=[usd_invoice.id],
        installments=3,
        every="month",
        deposit_percent=Decimal(0),
    )
    assert made.proposal.fee.minor == 1500
    assert (
        sum(i.amount.minor for i in made.proposal.installments)
        == usd_invoice.open_balance_minor + 1500
    )
    agree_and_pay(rt, made)
    drain(rt)
    drain(rt)  # the fee's ledger invoice is written
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    fee_invoices = [
        i
        for i in rt.demo_ledger(conn.tenant_id).read()["Invoice"]
        if "Installment plan fee" in str(i.get("lines") or i)
    ]
    assert len(fee_invoices) == 1
    sync_now(rt, conn)
    for _ in range(2):
        days(rt, 31)
        sync_now(rt, conn)
    row = plan_row(rt, made.plan_id)
    assert row.plan.status == "completed", [i.status for i in row.plan.installments]
    assert len(row.invoices) == 2  # the original and the fee's own invoice
    with rt.sessions() as s:
        assert all(s.get(Invoice, i.id).open_balance_minor == 0 for i in row.invoices)
        paid = s.scalars(
            select(CollectedPayment).where(CollectedPayment.status == "succeeded")
        ).all()
        assert sum(p.amount_minor for p in paid) == usd_invoice.open_balance_minor + 1500
        assert sum(p.unapplied_minor for p in paid) == 0  # every cent landed on an invoice


def test_today_s_forecast_counts_a_plan_s_installments_on_their_dates(
    rt, demo_company, usd_invoice
):
    from arbridge.sync.insight_store import insight
    from arbridge.sync.model import Company

    made = svc.make_offer(
        rt,
        company_id=demo_company.id,
        invoice_ids=[usd_invoice.id],
        installments=4,
        every="month",
        deposit_percent=Decimal(0),
    )
    agree_and_pay(rt, made)
    drain(rt)
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        today = company_today(company, rt.clock)
        without = insight(s, company, today, None).forecast
        with_plans = insight(s, company, today, None, live_plans=True).forecast
    # Same total (ar_end), to the cent.
    assert sum(w.amount for w in with_plans.weeks) + with_plans.later == without.ar_end
    assert with_plans.ar_end == without.ar_end
    # The three installments still to come fall in the weeks of their dates.
    rest = made.proposal.installments[1:]
    for inst in rest:
        week = (inst.due_on - today).days // 7
        if week < 13:
            assert with_plans.weeks[week].amount >= inst.amount.amount
