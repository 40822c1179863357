"""The invoices list's currency filter (issue 14): every view asked which currencies the
company's invoices are in by grouping all of them (0.25 s a view at 1M invoices on SQLite). It
now steps from one currency to the next down `ix_invoices_currency` (migration 0036), and must
give exactly what the grouping gave."""

from __future__ import annotations

from sqlalchemy import select

from arbridge.readmodels.invoices import currencies
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Invoice
from arbridge.sync.store import create_company
from tests.web.test_query_counts import counted


def _grouped(s, company_id: int) -> list[str]:
    return list(
        s.scalars(
            select(Invoice.currency)
            .where(Invoice.company_id == company_id)
            .group_by(Invoice.currency)
            .order_by(Invoice.currency)
        )
    )


def test_the_currency_filter_grouped_every_invoice_of_the_company(rt, demo_company):
    with transaction(rt.sessions) as s:
        other = create_company(
            s,
            rt.clock,
            name="Nothing Yet Ltd",
            slug="nothing-yet",
            home_currency="GBP",
            timezone="Europe/London",
            country="GB",
            owner_email="owner@nothing-yet.example",
        )
        other_id = other.id
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        with counted(rt) as seen:
            found = currencies(s, company.id)
        assert len(seen) == 1, seen
        assert found == _grouped(s, company.id)
        assert len(found) >= 3, found  # the demo bills in USD, EUR and CAD
        assert currencies(s, other_id) == [] == _grouped(s, other_id)
        if rt.engine.dialect.name == "sqlite":
            statement = seen[0]  # its only parameters are the company's id
            params = (company.id,) * statement.count("?")
            explained = s.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
            plan = "\n".join(str(r[-1]) for r in explained)
            assert "ix_invoices_currency (company_id=? AND currency>?)" in plan, plan
            assert "SCAN invoices" not in plan and "TEMP B-TREE" not in plan, plan
