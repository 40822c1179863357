"""The KPI arithmetic on plain rows (collections.kpis): the countback's blocks and the nulls."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from arbridge.collections.kpis import KpiCredit, KpiInvoice, countback, kpis, period_start

T = date(2026, 11, 24)


def invoice(issued_ago: int, total: int, *, due_in: int = 30, paid: int = 0, closed_ago=None):
    """An invoice in USD minor units issued `issued_ago` days before T."""
    issued = T - timedelta(days=issued_ago)
    return KpiInvoice(
        issued_on=issued,
        due_on=issued + timedelta(days=due_in),
        currency="USD",
        exchange_rate=Decimal(1),
        total_minor=total,
        applied_by_end_minor=paid,
        applied_by_begin_minor=0,
        closed_on=None if closed_ago is None else T - timedelta(days=closed_ago),
    )


def test_the_countback_stops_in_the_block_that_exhausts_what_is_left():
    # 250 left: block 1 takes 100 (30 days, 150 left), block 2 takes 100 (60 days, 50 left),
    # block 3 has 200 >= 50: 60 + 30 x 50 / 200 = 67.5
    assert countback(
        Decimal(250), [Decimal(100), Decimal(100), Decimal(200)] + [Decimal(0)] * 9
    ) == Decimal("67.5")
    # what is left equal to a block's sales ends in that block: 30 x 1
    assert countback(Decimal(100), [Decimal(100)] + [Decimal(0)] * 11) == 30


def test_the_countback_may_use_all_twelve_blocks_and_is_null_beyond():
    last = [Decimal(0)] * 11 + [Decimal(100)]
    assert countback(Decimal(100), last) == 360  # 11 x 30 + 30 x 100 / 100
    assert countback(Decimal("100.01"), last) is None


def test_nothing_owed_counts_no_days():
    assert countback(Decimal(0), [Decimal(0)] * 12) == 0
    assert countback(Decimal(0), [Decimal(500)] + [Decimal(0)] * 11) == 0


def test_the_blocks_are_30_days_ending_on_the_as_of_date():
    # Issued T-29 is block 1, T-30 block 2: 150 owed against 100 in block 1 and 100 in block 2
    # = 30 + 30 x 50 / 100 = 45.
    rows = [invoice(29, 100_00, paid=50_00), invoice(30, 100_00)]
    assert kpis(rows, [], T, 90, "USD").dso_countback == 45


def test_zero_net_credit_sales_nulls_dso_but_not_turnover():
    # 100.00 sold in the period, 100.00 credited: credit_sales = 0.
    rows = [invoice(10, 100_00)]
    credits = [KpiCredit(T - timedelta(days=5), "USD", Decimal(1), 100_00)]
    got = kpis(rows, credits, T, 90, "USD")
    assert got.credit_sales == 0
    assert (got.dso, got.best_possible_dso, got.average_days_delinquent) == (None, None, None)
    assert got.rounded()["ar_turnover"] == "0.00"  # 0 x 365 / 90 / ((0 + 100) / 2)


def test_days_to_pay_counts_only_invoices_closed_in_the_period():
    rows = [
        invoice(200, 100_00, paid=100_00, closed_ago=100),  # closed before the period
        invoice(60, 100_00, paid=100_00, closed_ago=20, due_in=30),  # 40 days, late
        invoice(40, 100_00, paid=100_00, closed_ago=10, due_in=30),  # 30 days, on the due day
    ]
    got = kpis(rows, [], T, 90, "USD")
    assert got.average_days_to_pay == 35 and got.on_time_rate == Decimal("0.5")


def test_foreign_amounts_are_rounded_once_per_document():
    # EUR 0.05 x 1.0842 = 0.05421 -> 0.05, three times: 0.15 (not 0.16 from rounding the sum)
    rows = [KpiInvoice(T, T, "EUR", Decimal("1.0842"), 5, 0, 0, None) for _ in range(3)]
    got = kpis(rows, [], T, 90, "USD")
    assert got.ar_end == Decimal("0.15") and got.credit_sales == Decimal("0.15")


def test_a_period_is_at_least_one_day():
    assert period_start(T, 1) == T
    with pytest.raises(ValueError):
        period_start(T, 0)
