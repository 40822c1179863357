"""collections.insight on plain values: lateness rounding, the forecast's weeks, projected DSO,
the flags' rules at their edges and the limit proposal."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from arbridge.collections.insight import (
    Behaviour,
    CustomerLimit,
    OpenAmount,
    Partials,
    expected_on,
    flags,
    forecast,
    lateness,
    limit_kind,
    partials_reason,
    projected_dso,
    proposed_limit,
    slowing_reason,
)

T = date(2026, 11, 24)
ONE = Decimal(1)


def test_lateness_rounds_halves_away_from_zero_and_is_0_without_closings():
    assert lateness(15, 2) == 8  # 7.5
    assert lateness(-5, 2) == -3  # -2.5
    assert lateness(14, 3) == 5  # 4.67
    assert lateness(-4, 3) == -1  # -1.33
    assert lateness(0, 0) == 0


def test_an_invoice_whose_expected_day_has_passed_is_expected_on_as_of():
    assert expected_on(T - timedelta(days=10), 3, T) == T
    assert expected_on(T - timedelta(days=10), 12, T) == T + timedelta(days=2)
    assert expected_on(T + timedelta(days=10), -20, T) == T


def test_forecast_weeks_edges_and_a_foreign_amount_rounded_alone():
    rows = [
        OpenAmount(1, T + timedelta(days=6), "USD", ONE, 100),  # day 6: week 1
        OpenAmount(1, T + timedelta(days=7), "USD", ONE, 200),  # day 7: week 2
        OpenAmount(1, T + timedelta(days=90), "USD", ONE, 300),  # day 90: week 13's last
        OpenAmount(1, T + timedelta(days=91), "USD", ONE, 400),  # day 91: later
        # EUR 0.05 x 1.0842 = 0.05421 -> 0.05; twice 0.10, not 0.11 (each rounded alone)
        OpenAmount(2, T, "EUR", Decimal("1.0842"), 5),
        OpenAmount(2, T, "EUR", Decimal("1.0842"), 5),
        OpenAmount(3, T + timedelta(days=1), "USD", ONE, -50),  # overpaid: counts negative
    ]
    fc = forecast(rows, {}, T, "USD", Decimal("100.00"), 30)
    # week 1 (days 0..6): 1.00 + 0.05 + 0.05 - 0.50 = 0.60
    assert [w.amount for w in fc.weeks][:2] == [Decimal("0.60"), Decimal("2.00")]
    assert fc.weeks[12].amount == Decimal("3.00") and fc.weeks[12].end == T + timedelta(days=90)
    assert fc.later == Decimal("4.00")
    # ar_end = 1.00 + 2.00 + 3.00 + 4.00 + 0.10 - 0.50 = 9.60
    assert fc.ar_end == Decimal("9.60") == sum((w.amount for w in fc.weeks), start=fc.later)
    assert fc.exposure == {1: 1000, 2: 10, 3: -50}
    # next 30 days (days 0..29): 1.00 + 2.00 + 0.10 - 0.50 = 2.60
    assert fc.next_30 == Decimal("2.60")
    # projected_dso = (9.60 - 2.60 + 100 / 30 x 30) / 100 x 30 = 107 / 100 x 30 = 32.1
    assert fc.projected_dso == Decimal("32.1")


def test_projected_dso_is_null_without_net_credit_sales():
    assert projected_dso(Decimal(100), Decimal(0), Decimal(0), 90) is None
    assert projected_dso(Decimal(100), Decimal(0), Decimal(-5), 90) is None


def b(recent: int, earlier: int, earlier_n: int = 3, recent_n: int = 3, run: int = 0):
    return Behaviour(7, recent, recent_n, earlier, earlier_n, 0, 0, run)


def test_slowing_needs_ten_days_more_on_unrounded_means_and_three_earlier_closings():
    # last 3: 15 + 18 + 21 = 54 -> 18; earlier 2 + 4 + 6 = 12 -> 4; 14 more: slowing
    assert slowing_reason(b(54, 12)) == (
        "paid the last 3 invoices 18 days late on average, against 4 before"
    )
    assert slowing_reason(b(30, 0)) is not None  # 10.00 more: exactly the margin
    assert slowing_reason(b(29, 0)) is None  # 9.67 more (it would round to 10)
    assert slowing_reason(b(60, 0, earlier_n=2)) is None  # only two earlier
    assert slowing_reason(b(60, 0, recent_n=2, earlier_n=0)) is None


def test_partials_growing_at_its_edges():
    assert partials_reason(Partials(1, 2, 3, 0, 3)) == (
        "paid 2 of the last 3 invoices in part, against 0 of 3 before"
    )
    assert partials_reason(Partials(1, 2, 3, 1, 3)) is not None  # 2/3 against 1/3: a third
    assert partials_reason(Partials(1, 2, 3, 2, 3)) is None  # no growth
    assert partials_reason(Partials(1, 1, 3, 0, 3)) is None  # one in part is not a pattern
    assert partials_reason(Partials(1, 3, 3, 2, 5)) is not None  # 1 against 0.4: 0.6 more
    assert partials_reason(Partials(1, 3, 3, 0, 2)) is None  # too little history


def test_limit_kinds_within_ten_percent_and_over():
    assert limit_kind(90000, 100000) == "near_limit"  # exactly 90%
    assert limit_kind(89999, 100000) is None
    assert limit_kind(100000, 100000) == "near_limit"  # at the limit, not over it
    assert limit_kind(100001, 100000) == "over_limit"
    assert limit_kind(5, None) is None and limit_kind(0, 0) is None
    assert limit_kind(1, 0) == "over_limit"


def test_flags_name_the_ledger_id_and_come_in_name_then_kind_order():
    customers = [
        CustomerLimit(1, "Zeta Co", "Z9", None),
        CustomerLimit(2, "acme", "A1", 100000),
        CustomerLimit(3, "Fine Ltd", "F1", 100000),
    ]
    found = flags(
        customers,
        [Behaviour(2, 54, 3, 12, 3, 0, 0, 0), Behaviour(3, 3, 3, 3, 3, 0, 0, 0)],
        [Partials(2, 2, 3, 0, 3)],
        {1: 60000, 2: 150000, 3: 50000},
        50000,  # default: Zeta's limit 500.00
        "USD",
    )
    assert [(f.customer_id, f.kind) for f in found] == [
        ("A1", "slowing"),
        ("A1", "partials_growing"),
        ("A1", "over_limit"),
        ("Z9", "over_limit"),
    ]
    assert found[-1].reason == "owes 600.00 USD on open invoices against a limit of 500.00"
    assert found[0].as_dict()["customer"] == "acme"


def test_a_higher_limit_is_proposed_after_the_run():
    # 1000.00 + 25% = 1250.00
    assert proposed_limit(100000, 6, 6, Decimal(25)) == 125000
    assert proposed_limit(100000, 5, 6, Decimal(25)) is None
    assert proposed_limit(None, 9, 6, Decimal(25)) is None
    assert proposed_limit(100000, 9, 6, Decimal(0)) is None
    # 333.33 + 12.5% = 374.99625: 37499.625 cents -> 37500 (halves up)
    assert proposed_limit(33333, 6, 6, Decimal("12.5")) == 37500


def test_trend_months_are_the_last_twelve_ended_by_as_of_oldest_first():
    from arbridge.collections.insight import trend_months

    months = trend_months(date(2026, 11, 24))  # November is not over: Nov 2025 to Oct 2026
    assert months[0] == (date(2025, 11, 1), date(2025, 11, 30))
    assert months[-1] == (date(2026, 10, 1), date(2026, 10, 31))
    assert len(months) == 12
    assert (date(2026, 2, 1), date(2026, 2, 28)) in months
    # On a month's last day that month counts; a leap February has 29 days.
    assert trend_months(date(2026, 11, 30))[-1] == (date(2026, 11, 1), date(2026, 11, 30))
    assert (date(2028, 2, 1), date(2028, 2, 29)) in trend_months(date(2028, 3, 31))


def test_a_slowing_reason_says_early_for_invoices_paid_before_their_due_date():
    # last 3: -15 / 3 = -5 (early); earlier -63 / 3 = -21: 16 more days, slowing
    assert slowing_reason(b(-15, -63)) == (
        "paid the last 3 invoices 5 days early on average, against 21 early before"
    )
    # 3 / 3 = 1 day late against -27 / 3 = 9 early
    assert slowing_reason(b(3, -27)) == (
        "paid the last 3 invoices 1 day late on average, against 9 early before"
    )
