from __future__ import annotations

from sqlalchemy import func, select

from arbridge.sync.db import DEFAULT_CACHE_KIB
from arbridge.sync.model import Invoice
from arbridge.sync.store import aging_report, company_today, ledger_connection
from tests.conftest import sync_now


def test_demo_company_syncs_every_bucket(rt, demo_company):
    with rt.sessions() as s:
        aging = aging_report(s, demo_company, company_today(demo_company, rt.clock))
        assert s.scalar(select(func.count()).select_from(Invoice)) == 300
    assert all(aging.counts[b] > 0 for b in aging.counts), aging.counts


def test_report_equals_aging_every_invoice_one_by_one(rt, demo_company):
    from arbridge.collections.aging import OpenItem, age
    from arbridge.sync.store import open_invoices

    today = company_today(demo_company, rt.clock)
    with rt.sessions() as s:
        fast = aging_report(s, demo_company, today)
        items = [
            OpenItem(i.due_on, i.balance, i.exchange_rate)
            for i in open_invoices(s, demo_company.id)
        ]
    slow = age(items, today, demo_company.home_currency)
    assert fast == slow
    assert len(items) == fast.open_invoices > 100


def test_demo_customers_are_distinct_businesses_with_distinct_contacts(rt, demo_company):
    from arbridge.sync.model import Contact, Customer

    with rt.sessions() as s:
        names = s.scalars(select(Customer.name).where(Customer.company_id == demo_company.id)).all()
        emails = s.scalars(select(Contact.email).where(Contact.company_id == demo_company.id)).all()
    assert len(names) == len(set(names)) == 40
    assert len(emails) == len(set(emails))


def test_a_pooled_connection_has_the_default_page_cache_again_after_a_sync(rt, demo_company):
    """SQLite: a sync's pages are written with a 32 MB page cache (issue 14); the connection
    goes back to the pool with SQLite's default 2 MB, so idle pooled connections hold no more."""
    with rt.sessions() as s:
        conn = ledger_connection(s, demo_company.id)
    sync_now(rt, conn, full=True)
    if rt.engine.dialect.name != "sqlite":
        return
    with rt.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA cache_size").scalar() == DEFAULT_CACHE_KIB == -2000
