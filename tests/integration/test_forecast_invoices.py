"""The invoices behind each week of the cash forecast (readmodels.forecast): the invoices list
filtered to a week lists the invoices the forecast expects in it, and what they are expected to
bring adds up to the week's figure, to the cent, on the hand-worked ledger of
tests/integration/test_insight.py and on the demo ledger with an installment plan over two
invoices (its installments split between them)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

from arbridge.readmodels import invoices as reads
from arbridge.readmodels.forecast import WEEKS, expected
from arbridge.services.payments import plans as svc
from arbridge.sync import db
from arbridge.sync.insight_store import insight
from arbridge.sync.model import Company, Invoice, Plan, PlanInstallment, PlanInvoice
from arbridge.sync.store import company_today, get_company, open_invoices
from arbridge.worker import drain
from tests.integration.test_insight import T, ledger
from tests.integration.test_plans import agree_and_pay


def listed(s, company, today, which, lateness):
    week = expected(s, company, today, which, lateness)
    rows = reads.invoices_export(
        s, company, today, reads.Filters(expected=which, status="all"), week=week
    )
    return {r.invoice.source_id: r.expected for r in rows}, week


def test_each_forecast_week_lists_the_invoices_expected_in_it(rt):
    ledger().build(rt)
    with rt.sessions() as s:
        company = get_company(s, "insight")
        found = insight(s, company, T, None)
        by_week = {w: listed(s, company, T, w, found.lateness) for w in WEEKS}
        totals = {w: week.total(s, company) for w, (_, week) in by_week.items()}
    names = {w: rows for w, (rows, _) in by_week.items()}
    # Week 1: O2 250.00 (T-30 + 7 = T-23, passed: today) + F3 40.00 (T+2 - 3 = T-1 -> today)
    assert names["1"] == {"O2": Decimal("250.00"), "F3": Decimal("40.00")}
    # Week 3 (T+14..T+20): O1 (T+10 + 7 = T+17) 200.00, E3 (T-5 + 20 = T+15) EUR 10.00 x 1.0842
    assert names["3"] == {"O1": Decimal("200.00"), "E3": Decimal("10.84")}
    # Week 5 (T+28..T+34): D1 80.00 less CN1 30.00 (T+29), D3 60.00 (T+30)
    assert names["5"] == {"D1": Decimal("50.00"), "D3": Decimal("60.00")}
    # Later: E2 EUR 123.45 x 1.0842 = 133.84 (T+80 + 20 = T+100). Paid and voided ones: nowhere.
    assert names["later"] == {"E2": Decimal("133.84")}
    assert all(not names[w] for w in ("2", "4", *map(str, range(6, 14))))
    fc = found.forecast
    figures = [w.amount for w in fc.weeks] + [fc.later]
    for w, figure in zip(WEEKS, figures, strict=True):
        assert sum(names[w].values(), Decimal(0)) == figure == totals[w], w


def test_a_plans_installments_are_split_between_its_invoices_and_add_up_to_each_week(
    rt, demo_company
):
    with rt.sessions() as s:
        by_customer: dict[int, list] = {}
        for i in open_invoices(s, demo_company.id):
            if (
                i.currency == "USD"
                and not i.payment_pending
                and i.total_minor == i.open_balance_minor
            ):
                by_customer.setdefault(i.customer_id, []).append(i)
        _, mine = max(by_customer.items(), key=lambda kv: len(kv[1]))
        ids = [i.id for i in mine[:2]]
    made = svc.make_offer(
        rt,
        company_id=demo_company.id,
        invoice_ids=ids,
        installments=4,
        every="week",
        deposit_percent=Decimal(0),
    )
    agree_and_pay(rt, made)
    drain(rt)
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        assert s.scalar(select(Plan.status).where(Plan.id == made.plan_id)) == "current"
        planned = set(
            s.scalars(select(PlanInvoice.invoice_id).where(PlanInvoice.plan_id == made.plan_id))
        )
        assert planned == set(ids)
        today = company_today(company, rt.clock)
        found = insight(s, company, today, None, live_plans=True)
        fc = found.forecast
        figures = [w.amount for w in fc.weeks] + [fc.later]
        seen_in: dict[int, int] = {}
        for which, figure in zip(WEEKS, figures, strict=True):
            week = expected(s, company, today, which, found.lateness)
            rows = reads.invoices_export(
                s, company, today, reads.Filters(expected=which, status="all"), week=week
            )
            assert (
                sum((r.expected for r in rows), Decimal(0)) == figure == week.total(s, company)
            ), which
            for r in rows:
                if r.invoice.id in planned:
                    seen_in[r.invoice.id] = seen_in.get(r.invoice.id, 0) + 1
        # The weekly installments after the first payment fall in more than one week.
        assert sum(seen_in.values()) > 1


def test_a_foreign_plans_installment_split_between_two_invoices_adds_up_to_the_forecasts_week(rt):
    """An installment of a EUR plan taken by two invoices: the forecast converts the
    installment once (EUR 66.95 x 1.0842 = 72.5872... -> 72.59), the list converted each
    invoice's part alone (4.45 -> 4.82 and 62.50 -> 67.76: 72.58), a cent short of the week."""
    ledger().build(rt)
    with db.transaction(rt.sessions) as s:
        company = get_company(s, "insight")
        by_source = {
            i.source_id: i
            for i in s.scalars(
                select(Invoice).where(
                    Invoice.company_id == company.id, Invoice.source_id.in_(("E2", "E3"))
                )
            )
        }
        e2, e3 = by_source["E2"], by_source["E3"]
        now = rt.clock.now()
        plan = Plan(
            company_id=company.id,
            customer_id=e2.customer_id,
            status="current",
            origin="owner",
            currency="EUR",
            balance_minor=13345,
            installment_count=3,
            every="week",
            deposit_percent=Decimal(0),
            start_on=T,
            agreement_text="",
            agreement_version="test",
            created_at=now,
            updated_at=now,
        )
        s.add(plan)
        s.flush()
        s.add_all([PlanInvoice(plan_id=plan.id, invoice_id=i.id) for i in (e3, e2)])
        for n, (days, minor) in enumerate([(3, 555), (10, 6695), (17, 6095)], start=1):
            s.add(
                PlanInstallment(
                    plan_id=plan.id,
                    number=n,
                    due_on=T + timedelta(days=days),
                    amount_minor=minor,
                    agreed_minor=minor,
                    status="scheduled",
                )
            )
    with rt.sessions() as s:
        company = get_company(s, "insight")
        found = insight(s, company, T, None, live_plans=True)
        fc = found.forecast
        figures = [w.amount for w in fc.weeks] + [fc.later]
        by_week = {w: listed(s, company, T, w, found.lateness) for w in WEEKS}
        # Week 2 (T+7..T+13): the installment of T+10, E3's last 4.45 and E2's first 62.50.
        rows, week = by_week["2"]
        assert set(rows) == {"E2", "E3"}
        assert sum(rows.values(), Decimal(0)) == Decimal("72.59") == fc.weeks[1].amount
        for w, figure in zip(WEEKS, figures, strict=True):
            rows, week = by_week[w]
            assert sum(rows.values(), Decimal(0)) == figure == week.total(s, company), w


def test_a_forecast_weeks_pages_are_its_whole_list_in_due_order(rt):
    """The list the dashboard links to pages the week's own rows first (issue 14): its pages,
    either way round, are the whole list's rows, in the same order."""
    ledger().build(rt)
    with rt.sessions() as s:
        company = get_company(s, "insight")
        found = insight(s, company, T, None)
        for which in WEEKS:
            for descending in (False, True):
                f = reads.Filters(expected=which, status="all", descending=descending)
                week = expected(s, company, T, which, found.lateness)
                whole = reads.invoices_export(s, company, T, f, week=week)
                paged, n = [], 1
                while n:
                    page = reads.invoices_page(s, company, T, f, page=n, page_size=1, week=week)
                    paged += page.rows
                    n = page.next
                key = [(r.invoice.id, r.expected) for r in whole]
                assert [(r.invoice.id, r.expected) for r in paged] == key, (which, descending)
