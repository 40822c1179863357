"""The small-company builder (tests/builders.py) puts what it is told where it is told."""

from __future__ import annotations

from arbridge.collections.aging import BUCKETS as AGING_BUCKETS
from arbridge.collections.aging import bucket, days_overdue
from arbridge.sync.store import company_today
from tests.builders import BUCKETS, SmallCompany


def test_a_small_company_syncs_its_customers_and_invoices_in_the_buckets_asked(rt):
    assert list(BUCKETS) == list(AGING_BUCKETS)
    books = SmallCompany(slug="harbor").customer("C1", "Harbor Bakery")
    books.customer("C2", "Cedar Studio", currency="EUR", active=False, email=None)
    for n, name in enumerate(BUCKETS):
        books.invoice(f"I{n}", "C1", "100.00", bucket=name)
    books.invoice("E1", "C2", "80.00", days_overdue=3).payment("I2", "30.00")
    built = books.build(rt)
    today = company_today(built.company, rt.clock)
    for n, name in enumerate(BUCKETS):
        inv = built.invoice(f"I{n}")
        assert bucket(days_overdue(inv.due_on, today)) == name
        assert (inv.currency, inv.total_minor, inv.status) == ("USD", 100_00, "open")
    euro = built.invoice("E1")
    assert euro.currency == "EUR" and days_overdue(euro.due_on, today) == 3
    assert built.customer("C2").currency == "EUR"
    ledger = {i["id"]: i for i in built.ledger.read()["Invoice"]}
    assert ledger["I2"]["balance"] == "70.00"
    assert [p["amount"] for p in built.ledger.read()["Payment"]] == ["30.00"]
