from datetime import date
from decimal import Decimal

import pytest

from arbridge.collections.payments import (
    Due,
    amount_to_pay,
    apply_payment,
    early_payment_discount,
    transition,
)
from arbridge.money import Money


def usd(x: str) -> Money:
    return Money(Decimal(x), "USD")


def test_discount_holds_until_the_last_day_inclusive():
    args = dict(balance=usd("1000.00"), issued_on=date(2026, 11, 1), percent=Decimal(2), days=10)
    d = early_payment_discount(as_of=date(2026, 11, 11), **args)
    assert d.amount == usd("20.00") and d.ends_on == date(2026, 11, 11)
    assert early_payment_discount(as_of=date(2026, 11, 12), **args) is None


def test_discount_rounds_once_and_respects_zero_decimal_currencies():
    d = early_payment_discount(
        Money(Decimal(12345), "JPY"), date(2026, 1, 1), date(2026, 1, 2), Decimal("2.5"), 5
    )
    assert d.amount == Money(Decimal(309), "JPY")  # 308.625 rounds half up
    assert (
        early_payment_discount(usd("0.10"), date(2026, 1, 1), date(2026, 1, 1), Decimal(2), 5)
        is None
    )
    assert early_payment_discount(usd("100"), date(2026, 1, 1), date(2026, 1, 1), None, 5) is None


def test_payment_settles_oldest_first_and_reports_overpayment():
    items = [Due(1, usd("100.00"), usd("2.00")), Due(2, usd("50.00"), usd("0.00"))]
    assert amount_to_pay(items, "USD") == usd("148.00")
    applied, left = apply_payment(usd("148.00"), items)
    assert [(a.invoice_id, a.amount, a.discount) for a in applied] == [
        (1, usd("98.00"), usd("2.00")),
        (2, usd("50.00"), usd("0.00")),
    ]
    assert left == usd("0.00")
    applied, left = apply_payment(usd("200.00"), items)
    assert left == usd("52.00")


def test_a_short_payment_loses_the_discount_on_the_invoice_it_does_not_settle():
    applied, left = apply_payment(usd("60.00"), [Due(1, usd("100.00"), usd("2.00"))])
    assert [(a.amount, a.discount) for a in applied] == [(usd("60.00"), usd("0.00"))]
    assert left == usd("0.00")


@pytest.mark.parametrize(
    ("current", "proposed", "expected"),
    [
        (None, "pending", "pending"),
        (None, "succeeded", "succeeded"),  # the success arrived before the "processing" event
        ("pending", "succeeded", "succeeded"),
        ("pending", "failed", "failed"),
        ("succeeded", "pending", None),  # a late "processing" never undoes a success
        ("succeeded", "succeeded", None),  # a duplicate
        # A decline, then another card in the same Checkout: the PaymentIntent succeeds.
        ("failed", "succeeded", "succeeded"),
        ("failed", "pending", None),  # only success leaves a failure
        ("succeeded", "failed", None),  # a late decline never undoes a success
        ("succeeded", "refunded", "refunded"),
        ("succeeded", "disputed", "disputed"),
        ("pending", "disputed", None),
        ("refunded", "disputed", None),
    ],
)
def test_transitions_only_move_forward(current, proposed, expected):
    assert transition(current, proposed) == expected


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        ("2% 10 Net 30", (Decimal(2), 10)),
        ("2/10 Net 30", (Decimal(2), 10)),
        ("1.5% 15, net 45", (Decimal("1.5"), 15)),
        ("Net 30", None),
        ("Due on receipt", None),
        (None, None),
        ("150% 10", None),
    ],
)
def test_discount_terms_from_the_ledger(terms, expected):
    from arbridge.collections.payments import discount_from_terms

    assert discount_from_terms(terms) == expected
