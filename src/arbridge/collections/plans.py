"""Installment plans, the pure part: who may choose one, what is offered, the schedule, what a
change of balance does to it, and how each installment is spread over the invoices it covers.

Pure: the caller loads plain facts and passes the start date in the company's timezone; nothing
here reads the clock, the database or the network. The rules, in plain terms:

- Offer. Plans are offered on the pay page only when the owner turned them on. A customer the
  owner denied never gets one; a customer the owner allowed always does (whatever the balance or
  standing). Otherwise the open balance, in the home currency, must be at least the minimum and,
  when the owner asks for good standing, no open invoice of the customer may be more than N days
  overdue and no earlier plan of theirs may have defaulted. An invoice already on a current plan
  is not offered another.
- Schedule. The total is the balance plus the fee (fixed and/or percent, rounded once). The
  deposit (its percent of the total, rounded half up), when there is one, is installment 0, due
  on the start date; installments 1..N follow
  one period apart (the first one period after the deposit, or on the start date without one).
  Every installment is the same amount rounded down to the currency's smallest unit, and the
  units left over go to the first installment (REMAINDER_RULE), so they add up to the total
  exactly. Monthly dates keep the start's day of the month, on the month's last day when it is
  shorter (31 January: 28 or 29 February, then 31 March).
- Balance change. When the balance falls below what is still to be charged, the excess comes off
  the last installments first (whole installments are dropped, then the last kept one shrinks),
  so the earlier dates and amounts stay as agreed and the plan finishes early. Nothing is ever
  added: a balance that grew is reported, and the schedule left as it was.
- Several invoices. Each payment is applied to the oldest invoice first (issue date, then
  number), to the cent.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from arbridge.collections.payments import Applied, Due, apply_payment
from arbridge.collections.policy import PLAN_FREQUENCIES, Policy
from arbridge.inputs import InputError, check_day
from arbridge.money import Money, to_decimal

FREQUENCIES = PLAN_FREQUENCIES  # "week", "fortnight", "month"
FREQUENCY_LABELS = {"week": "every week", "fortnight": "every two weeks", "month": "every month"}
# The pay page and the CLI state this next to the schedule.
REMAINDER_RULE = (
    "Each installment is the same amount; any cents left over are added to the first installment."
)
DEPOSIT = 0  # the deposit's installment number
# A hard ceiling, whatever the policy says (the settings page stores at most 120).
MAX_INSTALLMENTS = 120

DEFAULT_AGREEMENT = (
    "I agree to pay the balance shown in the installments and on the dates shown above. "
    "I authorise {business} to charge each installment to the payment method I give now, "
    "on its date, and to retry a charge that fails. I can cancel future charges at any time "
    "through my link; whatever is still owed is then due at once."
)


class PlanError(InputError):
    """A plan that cannot be made as asked; the message is one sentence for the person asking."""


# ---------------------------------------------------------------------------------------------
# The offer.


@dataclass(frozen=True)
class Eligibility:
    offered: bool
    reason: str  # plain English, for the owner's view and the activity log


def eligibility(
    pol: Policy,
    balance_home: Money,
    *,
    most_days_overdue: int = 0,
    has_defaulted_plan: bool = False,
    override: str | None = None,
    on_current_plan: bool = False,
) -> Eligibility:
    """May this customer choose a plan for this balance on the pay page?

    `balance_home` is the open balance in the home currency (aging.home_balance);
    `most_days_overdue` the most days any of the customer's open invoices is past due (0 when
    none is); `override` the owner's choice for this customer: "allow", "deny" or None."""
    if override not in (None, "allow", "deny"):
        raise ValueError(f"unknown override {override!r}")
    if not pol.plans_enabled:
        return Eligibility(False, "plans are turned off")
    if balance_home.amount <= 0:
        return Eligibility(False, "nothing is owed")
    if on_current_plan:
        return Eligibility(False, "already on a current plan")
    if override == "deny":
        return Eligibility(False, "the owner does not offer this customer plans")
    if override == "allow":
        return Eligibility(True, "the owner offers this customer plans")
    if balance_home.amount < pol.plan_min_balance:
        return Eligibility(False, f"the balance is under {pol.plan_min_balance}")
    if pol.plan_good_standing_only:
        if has_defaulted_plan:
            return Eligibility(False, "an earlier plan defaulted")
        if most_days_overdue > pol.plan_good_standing_days:
            days = pol.plan_good_standing_days
            return Eligibility(False, f"an invoice is more than {days} days overdue")
    return Eligibility(True, "the balance qualifies")


@dataclass(frozen=True)
class Agreement:
    text: str
    version: str  # stable hash of the text: stored with each acceptance


def agreement_version(text: str) -> str:
    """The text's version: SHA-256 of the text with line endings made "\\n", Unicode in NFC and
    the surrounding blank space trimmed, so the same words always get the same version (a browser
    sends "\\r\\n" from a textarea) and any change to the words gets a new one."""
    canonical = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    return hashlib.sha256(canonical.strip().encode("utf-8")).hexdigest()


def standard_agreement(business: str) -> str:
    """The stock agreement, naming the business."""
    return DEFAULT_AGREEMENT.format(business=business.strip() or "the business")


def agreement(pol: Policy, business: str) -> Agreement:
    """The owner's agreement text (or the stock one, naming the business), with its version."""
    if pol.plan_agreement_text is not None:
        text = pol.plan_agreement_text.strip()
    else:
        text = standard_agreement(business)
    return Agreement(text, agreement_version(text))


def plan_fee(
    balance: Money,
    fixed_home: Decimal | None,
    percent: Decimal | None,
    rate_to_home: Decimal = Decimal(1),
) -> Money:
    """The plan's fee in the balance's currency: the fixed fee (stated in the home currency,
    converted at `rate_to_home`, home units per one unit of the balance's currency) plus
    `percent` of the balance, rounded once. Zero when there is no fee."""
    amount = Decimal(0)
    if fixed_home:
        rate = to_decimal(rate_to_home)
        if rate <= 0:
            raise PlanError("The exchange rate must be above zero")
        amount += to_decimal(fixed_home) / rate
    if percent:
        amount += balance.amount * to_decimal(percent) / 100
    return Money.rounded(amount, balance.currency)


@dataclass(frozen=True)
class Offer:
    installment_counts: tuple[int, ...]  # the numbers of installments the customer may choose
    frequencies: tuple[str, ...]
    deposit_percent: Decimal
    fee: Money
    agreement: Agreement


def offer(pol: Policy, balance: Money, business: str, rate_to_home: Decimal = Decimal(1)) -> Offer:
    """What the pay page offers for `balance`: 2 up to the policy's most installments (just 1
    when the most is 1), the owner's frequencies, deposit, fee and agreement."""
    most = min(pol.plan_max_installments, MAX_INSTALLMENTS)
    return Offer(
        installment_counts=tuple(range(min(2, most), most + 1)),
        frequencies=pol.plan_frequencies,
        deposit_percent=pol.plan_deposit_percent,
        fee=plan_fee(balance, pol.plan_fee_amount, pol.plan_fee_percent, rate_to_home),
        agreement=agreement(pol, business),
    )


# ---------------------------------------------------------------------------------------------
# The schedule.


@dataclass(frozen=True)
class Installment:
    number: int  # 0 is the deposit; 1..N the installments
    due_on: date
    amount: Money


def add_months(start: date, months: int) -> date:
    """`start` plus whole months, on the start's day or the month's last day when it is shorter.

    Always counted from the start, never from the previous date: 31 January gives 28 (or 29)
    February and then 31 March, not 28 March."""
    month0 = start.month - 1 + months
    year, month = start.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def period_later(start: date, every: str, periods: int) -> date:
    if every == "week":
        return start + timedelta(days=7 * periods)
    if every == "fortnight":
        return start + timedelta(days=14 * periods)
    return add_months(start, periods)


def _check_count(installments: int, max_installments: int) -> None:
    if not isinstance(installments, int) or isinstance(installments, bool):
        raise PlanError("The number of installments is a whole number")
    most = min(max_installments, MAX_INSTALLMENTS)
    if not 1 <= installments <= most:
        raise PlanError(f"Choose from 1 to {most} installments")


def schedule(
    balance: Money,
    *,
    installments: int,
    every: str,
    start_on: date,
    max_installments: int,
    deposit_percent: Decimal | int | str = 0,
    fee: Money | None = None,
) -> tuple[Installment, ...]:
    """The installments for `balance` plus `fee` (see the module's rules), in due order.

    `max_installments` is the policy's most (Policy.plan_max_installments) for a plan the
    customer chooses. Refuses (PlanError) nothing owed, a count out of range, an unknown
    frequency, a deposit below 0% or of 100% or more, a negative fee, dates outside what arbridge keeps,
    and a total too small for every installment to be at least one smallest unit."""
    if not isinstance(balance, Money):
        raise TypeError("the balance is Money")
    if balance.amount <= 0:
        raise PlanError("There is no balance to split into installments")
    _check_count(installments, max_installments)
    if every not in FREQUENCIES:
        raise PlanError(f"Choose to pay every {', '.join(FREQUENCIES)}")
    percent = to_decimal(deposit_percent)
    if not 0 <= percent < 100:
        raise PlanError("The deposit is a percent from 0 to under 100")
    fee = fee if fee is not None else Money.zero(balance.currency)
    if fee.amount < 0:
        raise PlanError("The fee cannot be negative")
    total = balance + fee  # refuses a fee in another currency
    check_day(start_on)
    deposit = Money.rounded(total.amount * percent / 100, total.currency)
    if percent and deposit.amount <= 0:
        raise PlanError("The deposit would be nothing: choose a larger deposit or none")
    rest = (total - deposit).minor
    base, left_over = divmod(rest, installments)
    if base <= 0:
        raise PlanError(f"{total} is too small to split into {installments} installments")
    first = 1 if deposit else 0  # periods after the start for installment 1
    last_on = check_day(period_later(start_on, every, first + installments - 1))
    plan = [Installment(DEPOSIT, start_on, deposit)] if deposit else []
    for n in range(1, installments + 1):
        minor = base + (left_over if n == 1 else 0)
        due_on = last_on if n == installments else period_later(start_on, every, first + n - 1)
        plan.append(Installment(n, due_on, Money.from_minor(minor, total.currency)))
    return tuple(plan)


# ---------------------------------------------------------------------------------------------
# When the balance changes under a plan.

UNCHANGED, SHRUNK, FINISHED, BALANCE_GREW = "unchanged", "shrunk", "finished", "balance_grew"


@dataclass(frozen=True)
class Adjustment:
    outcome: str  # UNCHANGED, SHRUNK, FINISHED or BALANCE_GREW
    installments: tuple[Installment, ...]  # what is still to be charged, in due order
    dropped: tuple[int, ...] = ()  # numbers of installments no longer charged
    difference: Money | None = None  # BALANCE_GREW: by how much the balance exceeds the plan


def reschedule_after_balance_change(
    remaining: Sequence[Installment], new_balance: Money
) -> Adjustment:
    """Fit the installments still to be charged (`remaining`, in due order) to the balance.

    `new_balance` is what the covered invoices still owe, less any installment already charged
    but not yet in the ledger (aging.open_balance does this). The rule: the excess comes off the
    last installments first, so the plan finishes early and never charges more than the
    balance. A balance above the remaining total adds nothing: BALANCE_GREW says by how much,
    for a person to decide."""
    currency = new_balance.currency
    zero = Money.zero(currency)
    ordered = tuple(sorted(remaining, key=lambda i: (i.due_on, i.number)))
    still = sum((i.amount for i in ordered), zero)
    balance = max(new_balance, zero)
    if balance == still:
        return Adjustment(UNCHANGED, ordered)
    if balance > still:
        return Adjustment(BALANCE_GREW, ordered, difference=balance - still)
    excess = still - balance
    kept = list(ordered)
    dropped: list[int] = []
    while kept and excess >= kept[-1].amount:
        excess -= kept[-1].amount
        dropped.append(kept.pop().number)
    if excess:
        last = kept[-1]
        kept[-1] = Installment(last.number, last.due_on, last.amount - excess)
    outcome = SHRUNK if kept else FINISHED
    return Adjustment(outcome, tuple(kept), tuple(reversed(dropped)))


# ---------------------------------------------------------------------------------------------
# Several invoices under one plan.


@dataclass(frozen=True)
class PlanInvoice:
    invoice_id: int
    number: str | None
    issued_on: date
    balance: Money


_DIGITS = re.compile(r"([0-9]+)")


def _natural(number: str | None) -> tuple[tuple[int, int | str], ...]:
    """Sort key for invoice numbers: INV-9 before INV-10."""
    parts = _DIGITS.split(number or "")
    return tuple((1, int(p)) if p.isdigit() else (0, p.casefold()) for p in parts if p)


def oldest_first(invoices: Sequence[PlanInvoice]) -> list[PlanInvoice]:
    """By issue date, then number (INV-9 before INV-10), then id."""
    return sorted(invoices, key=lambda i: (i.issued_on, _natural(i.number), i.invoice_id))


def allocate(payment: Money, invoices: Sequence[PlanInvoice]) -> tuple[list[Applied], Money]:
    """Apply an installment's payment to the plan's invoices, oldest first, each up to its
    balance; returns what went where and what is left over (zero unless the payment was more
    than they owe: the caller refunds or holds it, never spreads it)."""
    if payment.amount <= 0:
        raise PlanError("A payment is above zero")
    dues = [
        Due(i.invoice_id, i.balance, Money.zero(payment.currency)) for i in oldest_first(invoices)
    ]
    applied, left = apply_payment(payment, [d for d in dues if d.balance.amount > 0])
    return applied, left
