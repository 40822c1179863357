"""The day's reminder facts are gathered in a fixed number of statements, whatever the number of
invoices that may be due (issue 14: 900-id chunks made a dry run's statements grow with the
ledger, and each invoice came back as a whole row with its lines)."""

from __future__ import annotations

from arbridge.services.reminders.preview import preview
from tests.builders import SmallCompany
from tests.web.test_query_counts import counted


def _books(rt, slug: str, overdue: int):
    books = SmallCompany(slug=slug, tenant_id=f"facts-{slug}")
    for c in range(3):
        books = books.customer(f"C{c}", f"Customer {c}")
    for n in range(overdue):
        books = books.invoice(f"I{n}", f"C{n % 3}", "10.00", days_overdue=3 + n % 40)
    return books.build(rt)


def test_a_dry_run_asks_as_many_statements_for_1000_overdue_invoices_as_for_10(rt):
    asked = {}
    for overdue in (10, 1000):
        books = _books(rt, f"co{overdue}", overdue)
        with counted(rt) as statements:
            p = preview(rt, books.company)
        assert len(p.loaded.day.decisions) == overdue
        assert {d.invoice.invoice_id for d in p.loaded.day.decisions} == {
            books.invoice(f"I{n}").id for n in range(overdue)
        }
        asked[overdue] = len(statements)
    assert asked[1000] == asked[10], asked
