"""The home-currency open balance stored at sync (issue 14): the aging sums it in SQL, and an
invoice whose stored figure no longer matches its open balance is converted again one by one,
so the aging is the sum of each invoice's balance converted and rounded once, as before."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import update

from arbridge.sync.db import transaction
from arbridge.sync.insight_store import aging_by_customer
from arbridge.sync.model import Invoice
from arbridge.sync.store import aging_report, company_today
from tests.builders import SmallCompany


def books(rt):
    """
    C1 (USD): U1 100.00, 45 days overdue.
    C2 (EUR at 1.0842): E1 EUR 0.05 and E2 EUR 0.05, both 45 days overdue.
      Each converts alone: 0.05 x 1.0842 = 0.05421 -> 0.05; two make 0.10 (converting their
      sum would give 0.10 x 1.0842 = 0.10842 -> 0.11: the stored figures are per invoice).
      E3 EUR 10.00 not due yet: 10.842 -> 10.84.
    """
    return (
        SmallCompany(slug="home-balance")
        .customer("C1", "Harbor Bakery")
        .customer("C2", "Cedar Studio", currency="EUR")
        .invoice("U1", "C1", "100.00", days_overdue=45)
        .invoice("E1", "C2", "0.05", days_overdue=45)
        .invoice("E2", "C2", "0.05", days_overdue=45)
        .invoice("E3", "C2", "10.00", days_overdue=-10)
        .build(rt)
    )


def test_a_synced_foreign_invoice_stores_its_balance_in_home_currency(rt):
    b = books(rt)
    e1, e3, u1 = b.invoice("E1"), b.invoice("E3"), b.invoice("U1")
    assert (e1.home_balance_minor, e1.home_basis_minor) == (5, 5)
    assert (e3.home_balance_minor, e3.home_basis_minor) == (1084, 1000)
    assert (u1.home_balance_minor, u1.home_basis_minor) == (100_00, 100_00)


def test_the_aging_sums_each_invoice_converted_and_rounded_alone(rt):
    b = books(rt)
    with rt.sessions() as s:
        aging = aging_report(s, b.company, company_today(b.company, rt.clock))
        by_customer = aging_by_customer(s, b.company, company_today(b.company, rt.clock))
    assert aging.buckets["31_60"].amount == Decimal("100.10")  # 100.00 + 0.05 + 0.05
    assert aging.buckets["current"].amount == Decimal("10.84")
    assert aging.open_balance.amount == Decimal("110.94")
    assert aging.counts["31_60"] == 3 and aging.open_invoices == 4
    cedar = by_customer[b.customer("C2").id]
    assert cedar.buckets["31_60"].amount == Decimal("0.10")
    assert cedar.open_balance.amount == Decimal("10.94")


def test_an_invoice_whose_stored_home_balance_is_out_of_date_is_converted_again(rt):
    """arbridge collected EUR 0.02 of E1 that the ledger does not show yet: its open balance is
    0.03 (0.03 x 1.0842 = 0.032526 -> 0.03), while the figure stored at sync still says 0.05."""
    b = books(rt)
    with transaction(rt.sessions) as s:
        s.execute(update(Invoice).where(Invoice.id == b.invoice("E1").id).values(unposted_minor=2))
    with rt.sessions() as s:
        aging = aging_report(s, b.company, company_today(b.company, rt.clock))
        by_customer = aging_by_customer(s, b.company, company_today(b.company, rt.clock))
    assert aging.buckets["31_60"].amount == Decimal("100.08")  # 100.00 + 0.03 + 0.05
    assert aging.counts["31_60"] == 3
    assert by_customer[b.customer("C2").id].buckets["31_60"].amount == Decimal("0.08")


def test_an_invoice_stored_without_a_home_balance_is_converted_one_by_one(rt):
    """A row written by a path that stores no home balance (basis NULL) still counts, exactly."""
    b = books(rt)
    with transaction(rt.sessions) as s:
        s.execute(
            update(Invoice)
            .where(Invoice.company_id == b.company.id)
            .values(home_balance_minor=None, home_basis_minor=None)
        )
    with rt.sessions() as s:
        aging = aging_report(s, b.company, company_today(b.company, rt.clock))
    assert aging.buckets["31_60"].amount == Decimal("100.10")
    assert aging.open_balance.amount == Decimal("110.94")
