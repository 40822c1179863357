"""The customers list sorted by name (its first view) and a customer's page sum the invoices,
payments, allocations and holds of the customers they show, not of every customer of the company
(issue 14: 20 s for a page of 50 at 1M invoices on SQLite, every sum grouped over the whole
ledger and all but 50 rows thrown away); what they show is what the whole list's query gives."""

from __future__ import annotations

from sqlalchemy import select

from arbridge.readmodels.customers import (
    SORTS,
    customer_detail,
    customers_export,
    customers_page,
)
from arbridge.sync.model import Company, Customer
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
