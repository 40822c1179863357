"""The one open balance and the one "is it open?" test, on a loaded invoice (no database)."""

from __future__ import annotations

import pytest

from arbridge.collections.aging import open_balance, owing
from arbridge.money import Money
from arbridge.sync.model import Invoice

# (ledger balance, unposted, total) -> open balance
CASES = [
    ((100_00, 0, 100_00), 100_00),  # nothing collected here: the ledger's figure
    ((100_00, 30_00, 100_00), 70_00),  # 30.00 collected, the write-back not landed
    ((100_00, 100_00, 100_00), 0),  # paid in full here
    ((0, 0, 100_00), 0),  # paid in the ledger, the write-back landed
    ((0, -40_00, 100_00), 40_00),  # 40.00 refunded here, the ledger still shows it paid
    ((20_00, 50_00, 100_00), 0),  # a cheque recorded meanwhile too: never below nothing
    ((90_00, -50_00, 100_00), 100_00),  # never more than the total
    ((-5_00, 0, 100_00), -5_00),  # nothing unposted: the ledger's word, as read
    ((10_00, 5_00, -20_00), 0),  # a negative total owes nothing once adjusted
]


@pytest.mark.parametrize(("figures", "expected"), CASES)
def test_open_balance(figures, expected):
    ledger, unposted, total = figures
    assert open_balance(ledger, unposted, total) == expected
    inv = Invoice(
        ledger_balance_minor=ledger, unposted_minor=unposted, total_minor=total, currency="USD"
    )
    assert inv.open_balance_minor == expected
    assert inv.balance == Money.from_minor(expected, "USD")


@pytest.mark.parametrize(
    ("status", "balance", "is_open"),
    [
        ("open", 1, True),
        ("open", 0, False),  # marked open with nothing left: nothing to chase or take
        ("open", -1, False),  # a credit is not owed
        ("paid", 5_00, False),  # paid wins over a balance not yet zeroed
        ("voided", 5_00, False),
        ("deleted", 5_00, False),
    ],
)
def test_an_invoice_is_open_when_marked_open_and_something_is_owed(status, balance, is_open):
    assert owing(status, balance) is is_open
    inv = Invoice(
        status=status,
        ledger_balance_minor=balance,
        unposted_minor=0,
        total_minor=10_00,
        currency="USD",
    )
    assert inv.is_open is is_open


def test_money_collected_here_closes_the_invoice_before_the_ledger_hears_of_it():
    inv = Invoice(
        status="open",
        ledger_balance_minor=100_00,
        unposted_minor=100_00,
        total_minor=100_00,
        currency="USD",
    )
    assert inv.open_balance_minor == 0 and not inv.is_open
