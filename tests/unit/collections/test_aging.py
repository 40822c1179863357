from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from arbridge.collections.aging import OpenItem, age, bucket
from arbridge.money import Money

AS_OF = date(2026, 11, 24)


@pytest.mark.parametrize(
    ("days", "name"),
    [
        (-5, "current"),
        (0, "current"),
        (1, "1_30"),
        (30, "1_30"),
        (31, "31_60"),
        (60, "31_60"),
        (61, "61_90"),
        (90, "61_90"),
        (91, "over_90"),
        (400, "over_90"),
    ],
)
def test_bucket_edges(days, name):
    assert bucket(days) == name


def usd(amount: str) -> Money:
    return Money(Decimal(amount), "USD")


def test_age_sums_buckets_in_home_currency():
    items = [
        OpenItem(date(2026, 11, 30), usd("100.00"), Decimal(1)),  # not yet due
        OpenItem(date(2026, 11, 24), usd("50.00"), Decimal(1)),  # due today: current
        OpenItem(date(2026, 11, 23), usd("10.00"), Decimal(1)),  # 1 day late
        OpenItem(date(2026, 9, 25), Money(Decimal("100.00"), "EUR"), Decimal("1.0842")),  # 60 days
        OpenItem(date(2026, 1, 1), Money(Decimal("3000"), "JPY"), Decimal("0.006667")),  # over 90
    ]
    aging = age(items, AS_OF, "USD")
    assert aging.buckets == {
        "current": usd("150.00"),
        "1_30": usd("10.00"),
        "31_60": usd("108.42"),
        "61_90": usd("0.00"),
        "over_90": usd("20.00"),
    }
    assert aging.open_invoices == 5
    assert aging.open_balance == usd("288.42")
    assert aging.overdue_balance == usd("138.42")
    assert aging.overdue_invoices == 3


def test_each_invoice_is_rounded_once_before_summing():
    # 3 x 0.335 would be 1.005 -> 1.01 if summed first; per invoice each is 0.34 (half up).
    items = [OpenItem(AS_OF, Money(Decimal("1.00"), "EUR"), Decimal("0.335"))] * 3
    assert age(items, AS_OF, "USD").open_balance == usd("1.02")


def test_empty_ledger():
    aging = age([], AS_OF, "JPY")
    assert aging.open_balance == Money.zero("JPY")
    assert aging.open_invoices == 0
