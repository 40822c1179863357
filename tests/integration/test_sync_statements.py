"""What the sync asks the database per page: the upsert hands back the ids it wrote (RETURNING)
instead of a lookup after it, and on PostgreSQL no statement is server-side prepared (a generic
plan for a 1,000-id IN list checks every row of the company against the whole list)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from arbridge.sync.db import transaction
from arbridge.sync.model import Customer
from arbridge.sync.page_writer import _upsert
from arbridge.sync.store import create_company
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
