"""Getting paid, the pure part: early-payment discounts, spreading a payment over invoices, and
which way a payment's state may move when Stripe's events arrive late, twice or out of order."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from arbridge.money import Money, total


@dataclass(frozen=True)
class Discount:
    amount: Money
    percent: Decimal
    ends_on: date


def early_payment_discount(
    balance: Money, issued_on: date, as_of: date, percent: Decimal | None, days: int | None
) -> Discount | None:
    """`percent` off the balance if paid within `days` of the invoice date (inclusive)."""
    if not percent or not days or balance.amount <= 0:
        return None
    ends_on = issued_on + timedelta(days=days)
    if as_of > ends_on:
        return None
    amount = Money.rounded(balance.amount * percent / 100, balance.currency)
    if amount.amount <= 0:
        return None
    return Discount(min(amount, balance), percent, ends_on)


# "2% 10 Net 30", "2/10 Net 30", "2% 10, net 30": QuickBooks and Xero spell discount terms freely.
_TERMS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:%|/)\s*(\d+)\b", re.IGNORECASE)


def discount_from_terms(terms: str | None) -> tuple[Decimal, int] | None:
    """(percent, days) from the ledger's payment terms, when they offer a discount."""
    if not terms:
        return None
    match = _TERMS.search(terms)
    if match is None:
        return None
    percent, days = Decimal(match.group(1)), int(match.group(2))
    if not (0 < percent < 100) or not (0 < days <= 365):
        return None
    return percent, days


@dataclass(frozen=True)
class Due:
    invoice_id: int
    balance: Money
    discount: Money  # zero when none applies


@dataclass(frozen=True)
class Applied:
    invoice_id: int
    amount: Money
    discount: Money


def amount_to_pay(items: Sequence[Due], currency: str) -> Money:
    return total((i.balance - i.discount for i in items), currency)


def apply_payment(paid: Money, items: Sequence[Due]) -> tuple[list[Applied], Money]:
    """Spread a payment over invoices in the order given (oldest first); return what is left.

    An invoice's discount counts only if the payment settles that invoice in full."""
    left = paid
    applied: list[Applied] = []
    zero = Money.zero(paid.currency)
    for item in items:
        if left.amount <= 0:
            break
        settle = item.balance - item.discount
        if left >= settle:
            applied.append(Applied(item.invoice_id, settle, item.discount))
            left -= settle
        else:
            applied.append(Applied(item.invoice_id, min(left, item.balance), zero))
            left = zero
    return applied, left


# A payment's life: each event may only move it forward. Duplicates and stragglers change nothing.
RANK = {None: 0, "pending": 1, "failed": 2, "succeeded": 2, "refunded": 3, "disputed": 3}


def transition(current: str | None, proposed: str) -> str | None:
    """The new status, or None when the event brings nothing new (a duplicate or a late one)."""
    if current == proposed:
        return None
    if current == "failed" and proposed == "succeeded":
        # A failure is never final while the PaymentIntent lives: Checkout lets the customer try
        # another card after a decline, and the same PaymentIntent then succeeds. Success is the
        # only way out of a failure (a late "processing" or "pending" must not reopen it).
        return proposed
    if proposed in ("refunded", "disputed") and current != "succeeded":
        return None  # only money that arrived can be refunded or disputed
    if RANK[proposed] <= RANK[current]:
        return None
    return proposed
