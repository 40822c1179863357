"""What the sync asks the database per page: the upsert hands back the ids it wrote (RETURNING)
instead of a lookup after it, and on PostgreSQL no statement is server-side prepared (a generic
plan for a 1,000-id IN list checks every row of the company against the whole list)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from arbridge.money import Money
from arbridge.sync.db import transaction
from arbridge.sync.model import Customer, Invoice
from arbridge.sync.page_writer import PageWriter, _ids, _upsert
from arbridge.sync.records import InvoiceData
from arbridge.sync.runner import _save_cursor, load_cursors
from arbridge.sync.store import create_company, ledger_connection
from tests.conftest import ON_POSTGRES
from tests.web.test_query_counts import counted


def test_an_upsert_returns_its_ids_without_a_lookup_after_it(rt):
    with transaction(rt.sessions) as s:
        company = create_company(
            s, rt.clock, name="Acme", slug="acme", home_currency="USD", timezone="UTC",
            country="US", owner_email="o@acme.example",
        )  # fmt: skip
        rows = [
            {
                "company_id": company.id,
                "source": "demo",
                "source_id": f"C-{n}",
                "name": f"Customer {n}",
                "synced_at": rt.clock.now(),
            }
            for n in range(250)
        ]
        with counted(rt) as statements:
            first = _upsert(s, Customer, rows)
            again = _upsert(s, Customer, [{**r, "name": r["name"] + "!"} for r in rows])
        assert len(first) == 250 and again == first
        assert not [q for q in statements if q.lstrip().upper().startswith("SELECT")]
        stored = s.execute(
            text("SELECT source_id, id FROM customers WHERE company_id = :c"), {"c": company.id}
        )
        assert dict(stored.tuples().all()) == first


@pytest.mark.skipif(not ON_POSTGRES, reason="server-side prepared statements are PostgreSQL's")
def test_postgresql_connections_never_prepare_statements(rt):
    with rt.engine.connect() as conn:
        assert conn.connection.driver_connection.prepare_threshold is None


@pytest.mark.skipif(not ON_POSTGRES, reason="JIT compilation is PostgreSQL's")
def test_a_pages_query_on_postgresql_spent_most_of_its_time_jit_compiling_itself(rt):
    """Issue 14: the forecast week's invoices list at 1M invoices ran its one query in 318 ms on
    PostgreSQL, 208 ms of it compiling the query to machine code (JIT: on by default for any
    query the planner costs above jit_above_cost, as a query over a big company's invoices
    is). A page's query runs once and briefly: arbridge's connections run without JIT."""
    with rt.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
        # And again on a connection given back to the pool and taken out again (a rollback).
        conn.rollback()
    with rt.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"


@pytest.mark.skipif(not ON_POSTGRES, reason="psycopg's parse of long statements is PostgreSQL's")
def test_a_pages_upsert_and_lookups_are_one_short_statement_whatever_the_page_holds(rt):
    """A page's rows go in as one array per column and its ids are looked up as one array: the
    statement psycopg sees is the same for 2 rows as for 600 (a VALUES list or an IN list of a
    page's rows was ~17,000 placeholders, too long for psycopg's cache and parsed again in
    Python for every page)."""
    with transaction(rt.sessions) as s:
        company = create_company(
            s, rt.clock, name="Acme", slug="acme", home_currency="USD", timezone="UTC",
            country="US", owner_email="o@acme.example",
        )  # fmt: skip

        def rows(n: int) -> list[dict]:
            return [
                {
                    "company_id": company.id,
                    "source": "demo",
                    "source_id": f"C-{i}",
                    "name": f"Customer {i}",
                    "synced_at": rt.clock.now(),
                }
                for i in range(n)
            ]

        s.flush()
        with counted(rt) as few:
            small = _upsert(s, Customer, rows(2))
            _ids(s, Customer, company.id, "demo", small)
        with counted(rt) as many:
            large = _upsert(s, Customer, rows(600))
            found = _ids(s, Customer, company.id, "demo", large)
        assert found == large and len(large) == 600
        assert many == few and len(many) == 2
        assert all(len(q) < 4096 for q in many)  # psycopg caches the parse of shorter ones


def test_saving_a_page_of_invoices_asks_seven_statements(rt, demo_company):
    """The customers' ids, the collected payments on the page's invoices (looked up by their
    ledger ids in the same query, not after a lookup of their ids), the company's home currency
    (the upsert stores each invoice's home-currency balance), the ids of the page's invoices
    already stored and their allocations (sync.settled_store: the figures the insight sums go in
    with the upsert, and an allocation's are written again only when they change), the upsert
    and the bump of the company's insight version (sync.insight_cache): seven, whatever the
    page's size (nine before, when the figures were read back and written after the upsert)."""
    with transaction(rt.sessions) as s:
        conn = ledger_connection(s, demo_company.id)
        customer = s.scalars(select(Customer).where(Customer.company_id == demo_company.id)).first()
        invoices = s.scalars(
            select(Invoice).where(Invoice.customer_id == customer.id).order_by(Invoice.id)
        ).all()
        recs = [
            InvoiceData(
                source_id=i.source_id,
                customer_source_id=customer.source_id,
                number=i.number,
                issued_on=i.issued_on,
                due_on=i.due_on,
                exchange_rate=i.exchange_rate,
                total=Money.from_minor(i.total_minor, i.currency),
                balance=Money.from_minor(i.ledger_balance_minor, i.currency),
                status=i.status,
            )
            for i in invoices
        ]
        writer = PageWriter(s, conn, rt.clock)
        with counted(rt) as statements:
            assert writer.invoices(recs) == []
        assert recs and len(statements) == 7


def test_moving_a_sync_cursor_is_one_statement(rt, demo_company):
    with transaction(rt.sessions) as s:
        conn = ledger_connection(s, demo_company.id)
        with counted(rt) as statements:
            _save_cursor(s, conn.id, "invoices", "moved", rt.clock)
            s.flush()
        assert len(statements) == 1
        assert load_cursors(s, conn.id)["invoices"] == "moved"
