"""The customers list sorted by name (its first view) and a customer's page sum the invoices,
payments, allocations and holds of the customers they show, not of every customer of the company
(issue 14: 20 s for a page of 50 at 1M invoices on SQLite, every sum grouped over the whole
ledger and all but 50 rows thrown away); what they show is what the whole list's query gives."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, or_, select

from arbridge.readmodels.customers import (
    SORTS,
    customer_detail,
    customers_export,
    customers_page,
)
from arbridge.sync.model import (
    Company,
    CreditNote,
    Customer,
    Invoice,
    Payment,
    PaymentAllocation,
)
from arbridge.sync.store import company_today
from tests.web.test_query_counts import counted


def test_a_page_of_the_customers_list_summed_every_customers_ledger(rt, demo_company):
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        today = company_today(company, rt.clock)
        with counted(rt) as seen:
            page = customers_page(s, company, today, page=2, page_size=7)
        shown = [r.customer.id for r in page.rows]
        summing = [st for st in seen if "GROUP BY" in st]
        assert summing, seen
        assert all("customer_id IN" in st for st in summing), summing
        # The same rows, figures and order as the whole list's query gives.
        whole = customers_export(s, company, today)
        assert page.rows == whole[7:14]
        assert (page.prev, page.next) == (1, 3)
        flags = {r.customer.id: r.customer.id % 3 for r in whole}
        for sort, descending, search in [
            *((sort, descending, None) for sort in SORTS for descending in (False, True)),
            ("name", False, "a"),
            ("balance", True, "a"),
        ]:
            every = customers_export(
                s,
                company,
                today,
                search=search,
                sort=sort,
                descending=descending,
                flag_counts=flags,
            )
            paged = []
            n = 1
            while n:
                found = customers_page(
                    s,
                    company,
                    today,
                    search=search,
                    sort=sort,
                    descending=descending,
                    page=n,
                    page_size=9,
                    flag_counts=flags,
                )
                paged += found.rows
                n = found.next
            assert paged == every, (sort, descending, search)
        assert shown == [r.customer.id for r in whole[7:14]]


def test_a_customers_page_summed_every_customers_ledger(rt, demo_company):
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        today = company_today(company, rt.clock)
        whole = {r.customer.id: r for r in customers_export(s, company, today)}
        customer = s.scalars(
            select(Customer).where(Customer.company_id == company.id).order_by(Customer.id)
        ).first()
        with counted(rt) as seen:
            detail = customer_detail(s, company, customer, today)
        assert detail.row == whole[customer.id]
        summing = [st for st in seen if "GROUP BY" in st]
        assert summing and all("customer_id IN" in st for st in summing), summing


def test_the_customers_sorts_read_the_stored_closings_and_give_what_the_allocations_say(
    rt, demo_company
):
    """Issue 14: sorted by days to pay, on time, lateness or last payment, the list read every
    allocation (or payment) of the company (about 5 s at 1M invoices on SQLite). Its sorts now
    read the closing day the sync stores and one latest payment per customer: the figures are
    still what the allocations and payments say (each paid invoice closing on its last live
    allocation's date, the last 365 days), and the page's first query reads neither."""
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        today = company_today(company, rt.clock)
        on = func.coalesce(PaymentAllocation.applied_on, Payment.received_on, CreditNote.issued_on)
        closing = dict(
            s.execute(
                select(PaymentAllocation.invoice_id, func.max(on))
                .outerjoin(Payment, Payment.id == PaymentAllocation.payment_id)
                .outerjoin(CreditNote, CreditNote.id == PaymentAllocation.credit_note_id)
                .where(
                    PaymentAllocation.company_id == company.id,
                    or_(Payment.id.is_(None), Payment.status.not_in(("voided", "deleted"))),
                    or_(CreditNote.id.is_(None), CreditNote.status.not_in(("voided", "deleted"))),
                )
                .group_by(PaymentAllocation.invoice_id)
            )
            .tuples()
            .all()
        )
        closed: dict[int, list[tuple[int, int]]] = {}
        for inv in s.scalars(
            select(Invoice).where(Invoice.company_id == company.id, Invoice.status == "paid")
        ):
            day = closing.get(inv.id)
            if day is None or not (today - timedelta(days=365) < day <= today):
                continue
            closed.setdefault(inv.customer_id, []).append(
                ((day - inv.due_on).days, (day - inv.issued_on).days)
            )
        last_paid: dict[int, date] = {}
        for cid, received_on in s.execute(
            select(Payment.customer_id, Payment.received_on).where(
                Payment.company_id == company.id, Payment.status.not_in(("voided", "deleted"))
            )
        ).tuples():
            last_paid[cid] = max(received_on, last_paid.get(cid, received_on))
        rows = customers_export(s, company, today)
        assert any(closed.values()) and last_paid
        for r in rows:
            mine = closed.get(r.customer.id, [])
            assert r.last_payment == last_paid.get(r.customer.id)
            if not mine:
                assert (r.days_to_pay, r.on_time_rate, r.lateness) == (None, None, 0)
                continue
            n = len(mine)
            assert abs(float(r.days_to_pay) - sum(p for _, p in mine) / n) < 1e-9
            assert abs(float(r.on_time_rate) - sum(late <= 0 for late, _ in mine) / n) < 1e-9
            mean_late = Decimal(sum(late for late, _ in mine)) / n
            assert r.lateness == int(mean_late.quantize(Decimal(1), ROUND_HALF_UP))
        for sort in ("days_to_pay", "on_time", "lateness", "last_payment"):
            with counted(rt) as seen:
                customers_page(s, company, today, sort=sort, page_size=5)
            assert not any("payment_allocations" in st for st in seen[:1]), sort
