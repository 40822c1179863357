"""Late fees and interest: pure decisions over (invoice facts, policy, as_of), never twice.

Three kinds of charge, each kept apart from the others as ERPNext's dunning keeps the fee apart
from the interest, and each a separate invoice in the ledger (the original stays as the
customer received it):

- "fee": a flat fee and/or a percent of the overdue balance, once, the day the invoice is more
  than `grace_days` past due;
- "interest": simple interest at an annual rate on the overdue balance, overdue balance x rate
  / 365 x days (365 in a leap year too, as the UK act and ERPNext count), assessed per calendar
  month once the month is over; a payment on a day lowers that day's balance;
- "compensation": the UK statutory preset's fixed sum (GBP 40 / 70 / 100 by the debt's size),
  once, in place of the fee.

Charges start from `charge_from` (set to the business's today when the owner turns fees on), so
turning fees on never back-charges every old invoice: a one-off fee or compensation is charged
only when the day the invoice passed its grace period is on or after it, and interest counts only
the days from it (a month that straddles it, from that day). A policy stored without one (saved
before the date existed) keeps its old meaning: no limit.

Every assessment has a unique key (invoice, kind, period), where period is "once" or the
month ("2026-11"); the service claims each key once, so a rerun, a retry or a second worker
never charges twice. Amounts in the policy (flat fee, cap, minimum balance) are in the
company's home currency, converted to the invoice's currency at the invoice's rate; the UK
compensation is in pounds.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from arbridge.clock import day_text
from arbridge.collections.policy import merged
from arbridge.money import Money, exponent

KINDS = ("fee", "interest", "compensation")
PRESETS = ("custom", "uk_statutory")
ONCE = "once"
DAYS_A_YEAR = Decimal(365)
# The Late Payment of Commercial Debts (Interest) Act 1998: 8% over the reference rate, and a
# fixed sum per invoice by the debt's size (s.5A, as amended 2002).
UK_MARGIN = Decimal(8)
UK_COMPENSATION = ((Decimal(10_000), Decimal(100)), (Decimal(1_000), Decimal(70)))
UK_COMPENSATION_SMALL = Decimal(40)
MAX_AMOUNT = Decimal(10) ** 12


@dataclass(frozen=True)
class LateFeePolicy:
    enabled: bool = False
    preset: str = "custom"  # "custom" or "uk_statutory"
    grace_days: int = 0
    flat_fee: Decimal | None = None  # home currency
    fee_percent: Decimal | None = None  # percent of the overdue balance
    annual_rate: Decimal | None = None  # percent a year (custom); the UK preset computes its own
    cap: Decimal | None = None  # home currency, all charges on one invoice together
    min_balance: Decimal | None = None  # home currency: smaller overdue balances are left alone
    # The Bank of England base rate (percent) and the day each value took effect, oldest first.
    base_rates: tuple[tuple[date, Decimal], ...] = ()
    # Nothing from before this day: the first day an invoice's grace period may end for a one-off
    # charge, and the first day interest counts. None: no limit (policies saved before it).
    charge_from: date | None = None
    problems: tuple[str, ...] = ()

    @property
    def uk(self) -> bool:
        return self.preset == "uk_statutory"

    @property
    def charges_anything(self) -> bool:
        if not self.enabled:
            return False
        if self.uk:
            return True
        return bool(self.flat_fee or self.fee_percent or self.annual_rate)


@dataclass(frozen=True)
class InvoiceFacts:
    """What the rules need of one invoice, loaded by the service in one query."""

    invoice_id: int
    customer_id: int
    number: str
    currency: str
    exchange_rate: Decimal  # home-currency units for one unit of `currency`
    due_on: date
    balance_minor: int  # the open balance on as_of
    # Money applied to the invoice (payments, credits) with the day it was applied; the balance
    # on a day is the balance now plus what was applied after that day.
    settlements: tuple[tuple[date, int], ...] = ()
    # What earlier runs assessed (not waived), by (kind, period), in minor units.
    assessed: Mapping[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    invoice_id: int
    customer_id: int
    kind: str
    period: str
    amount: Money
    description: str  # the ledger invoice's line: "Late fee on INV-1042"
    basis: str  # how it was worked out, in words, for the owner and the customer

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.invoice_id, self.kind, self.period)


# --- stored settings ---------------------------------------------------------------------------


def _number(raw: Any, lo: Decimal, hi: Decimal, what: str, problems: list[str]) -> Decimal | None:
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(str(raw)) if isinstance(raw, int | str | Decimal) else None
    except ArithmeticError:
        value = None
    if isinstance(raw, bool) or value is None or not value.is_finite() or not lo <= value <= hi:
        problems.append(f"{what} was not a number from {lo} to {hi}")
        return None
    return value


def late_fee_policy(stored: Mapping[str, Any] | None) -> LateFeePolicy:
    """The policy from the company's stored settings ("late_fees"), each value within its range;
    a value that cannot be read falls back to none and is named in `problems`."""
    s = merged(stored)["late_fees"]
    problems: list[str] = []
    preset = s.get("preset") if s.get("preset") in PRESETS else "custom"
    if s.get("preset") not in (None, "", *PRESETS):
        problems.append("The late-fee preset was not one we know")
    grace = _number(s.get("grace_days"), Decimal(0), Decimal(3660), "The grace period", problems)
    if grace is not None and grace != grace.to_integral_value():
        problems.append("The grace period was not a whole number of days")
        grace = None
    rates: list[tuple[date, Decimal]] = []
    raw_rates = s.get("base_rates") or []
    for entry in raw_rates if isinstance(raw_rates, list) else []:
        try:
            on = date.fromisoformat(entry["effective_on"])
            rate = _number(entry["rate"], Decimal(0), Decimal(100), "A base rate", problems)
        except (KeyError, TypeError, ValueError):
            problems.append("A stored base rate could not be read")
            continue
        if rate is not None:
            rates.append((on, rate))
    enabled = bool(s.get("enabled"))
    charge_from = None
    if s.get("charge_from") not in (None, ""):
        try:
            charge_from = date.fromisoformat(s["charge_from"])
        except (TypeError, ValueError):
            # Off rather than back-charging every old invoice; the settings page names it.
            problems.append("The day late fees are charged from could not be read")
            enabled = False
    return LateFeePolicy(
        enabled=enabled,
        preset=preset,
        grace_days=int(grace) if grace is not None else 0,
        flat_fee=_number(s.get("flat_fee"), Decimal(0), MAX_AMOUNT, "The late fee", problems)
        or None,
        fee_percent=_number(
            s.get("fee_percent"), Decimal(0), Decimal(100), "The late fee percent", problems
        )
        or None,
        annual_rate=_number(
            s.get("annual_rate"), Decimal(0), Decimal(100), "The interest rate", problems
        )
        or None,
        cap=_number(s.get("cap"), Decimal(0), MAX_AMOUNT, "The cap", problems),
        min_balance=_number(
            s.get("min_balance"), Decimal(0), MAX_AMOUNT, "The minimum balance", problems
        )
        or None,
        base_rates=tuple(sorted(rates)),
        charge_from=charge_from,
        problems=tuple(problems),
    )


def with_base_rate(stored_rates: Any, effective_on: date, rate: Decimal) -> list[dict[str, str]]:
    """The stored base-rate history with one more value (replacing one of the same day)."""
    kept = [
        r
        for r in (stored_rates if isinstance(stored_rates, list) else [])
        if isinstance(r, dict) and r.get("effective_on") != effective_on.isoformat()
    ]
    kept.append({"effective_on": effective_on.isoformat(), "rate": str(rate)})
    return sorted(kept, key=lambda r: str(r.get("effective_on")))


# --- amounts -----------------------------------------------------------------------------------


def _round(amount: Decimal, currency: str) -> Money:
    return Money(
        amount.quantize(Decimal(1).scaleb(-exponent(currency)), rounding=ROUND_HALF_UP), currency
    )


def _from_home(amount: Decimal, inv: InvoiceFacts) -> Decimal:
    """A home-currency amount in the invoice's currency (unrounded)."""
    return amount if inv.exchange_rate == 1 else amount / inv.exchange_rate


def _to_home(amount: Decimal, inv: InvoiceFacts) -> Decimal:
    return amount * inv.exchange_rate


def uk_reference_date(first_overdue: date) -> date:
    """The day whose base rate applies for the whole debt: 31 December for a debt that fell
    overdue from January to June, 30 June for one from July to December (the 1998 Act s.6)."""
    if first_overdue.month <= 6:
        return date(first_overdue.year - 1, 12, 31)
    return date(first_overdue.year, 6, 30)


def uk_base_rate(policy: LateFeePolicy, first_overdue: date) -> tuple[Decimal, date] | None:
    """The base rate in force on the reference day, and when it took effect (None: no rate is
    set). Before the first value set, the first one is used (and said so in the basis)."""
    if not policy.base_rates:
        return None
    ref = uk_reference_date(first_overdue)
    known = [(on, r) for on, r in policy.base_rates if on <= ref]
    on, rate = known[-1] if known else policy.base_rates[0]
    return rate, on


def annual_rate(policy: LateFeePolicy, inv: InvoiceFacts) -> tuple[Decimal, str] | None:
    """The interest rate (percent a year) for this invoice and how it was set, or None."""
    if policy.uk:
        found = uk_base_rate(policy, inv.due_on + timedelta(days=1))
        if found is None:
            return None
        base, on = found
        return base + UK_MARGIN, (
            f"8% over the Bank of England base rate of {_pct(base)}% (in force from {on:%d %b %Y})"
        )
    if not policy.annual_rate:
        return None
    return policy.annual_rate, f"{_pct(policy.annual_rate)}% a year"


def uk_compensation(balance_gbp: Decimal) -> Decimal:
    for at_least, amount in UK_COMPENSATION:
        if balance_gbp >= at_least:
            return amount
    return UK_COMPENSATION_SMALL


def _pct(value: Decimal) -> str:
    return f"{value.normalize():f}"


def balance_on(inv: InvoiceFacts, day: date) -> int:
    """The open balance during `day`: the balance now plus what was applied after that day."""
    return inv.balance_minor + sum(m for on, m in inv.settlements if on > day)


def month_name(period: str) -> str:
    year, month = (int(p) for p in period.split("-"))
    return f"{calendar.month_name[month]} {year}"


def interest_for_month(
    inv: InvoiceFacts, rate: Decimal, year: int, month: int, charge_from: date | None = None
) -> tuple[Decimal, int]:
    """Interest (unrounded, invoice currency) for the overdue days of one month on or after
    `charge_from` (None: all of them), and the days."""
    first = max(date(year, month, 1), inv.due_on + timedelta(days=1), charge_from or date.min)
    last = date(year, month, calendar.monthrange(year, month)[1])
    days = (last - first).days + 1
    if days <= 0:
        return Decimal(0), 0
    # The balance only changes on a settlement day: sum whole runs of equal balance.
    total = Decimal(0)
    scale = Decimal(1).scaleb(-exponent(inv.currency))
    day = first
    while day <= last:
        balance = balance_on(inv, day)
        run_end = min(
            [last] + [on - timedelta(days=1) for on, _ in inv.settlements if day < on <= last]
        )
        n = (run_end - day).days + 1
        total += Decimal(balance) * scale * rate / 100 / DAYS_A_YEAR * n
        day = run_end + timedelta(days=1)
    return total, days


def _months(start: date, through: date) -> Iterable[tuple[int, int]]:
    """Each (year, month) from start's month through through's month."""
    y, m = start.year, start.month
    while (y, m) <= (through.year, through.month):
        yield y, m
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


# --- the decision -----------------------------------------------------------------------------


def past_grace_on(inv: InvoiceFacts, policy: LateFeePolicy) -> date:
    """The day the invoice passed its grace period: the first day it is more than `grace_days`
    past due, the day a one-off charge falls due."""
    return inv.due_on + timedelta(days=policy.grace_days + 1)


def earliest_due_on(policy: LateFeePolicy) -> date | None:
    """The earliest due date that can still be charged anything, for the service's query: with
    `charge_from` and no interest, an invoice past its grace period before it never is (None:
    any due date, when there is no charge_from or interest counts from it on any invoice)."""
    accrues = bool(policy.base_rates) if policy.uk else bool(policy.annual_rate)
    if policy.charge_from is None or accrues:
        return None
    return policy.charge_from - timedelta(days=policy.grace_days + 1)


def assess(
    inv: InvoiceFacts, policy: LateFeePolicy, as_of: date, *, exempt: bool = False
) -> list[Assessment]:
    """The charges this invoice owes on `as_of` that earlier runs did not assess yet."""
    if not policy.charges_anything or exempt or inv.balance_minor <= 0:
        return []
    days_overdue = (as_of - inv.due_on).days
    if days_overdue <= policy.grace_days:
        return []
    balance = Money.from_minor(inv.balance_minor, inv.currency)
    if policy.min_balance and _to_home(balance.amount, inv) < policy.min_balance:
        return []
    number = inv.number
    wanted: list[tuple[str, str, Decimal, str, str]] = []  # kind, period, amount, line, basis
    # A one-off charge only for invoices that passed their grace period on or after charge_from.
    once = policy.charge_from is None or past_grace_on(inv, policy) >= policy.charge_from
    if once and policy.uk:
        owed = _uk_compensation_for(inv, balance)
        if owed is not None:
            amount, basis = owed
            wanted.append(
                ("compensation", ONCE, amount, f"Late payment compensation on {number}", basis)
            )
    elif once:
        fee = Decimal(0)
        parts = []
        if policy.flat_fee:
            fee += _from_home(policy.flat_fee, inv)
            parts.append("a flat fee")
        if policy.fee_percent:
            fee += balance.amount * policy.fee_percent / 100
            parts.append(f"{_pct(policy.fee_percent)}% of the overdue {balance.format()}")
        if fee:
            basis = (
                f"{' plus '.join(parts)}, charged once {days_overdue} days after the due date "
                f"{day_text(inv.due_on)}"
            )
            basis = basis[0].upper() + basis[1:]
            wanted.append(("fee", ONCE, fee, f"Late fee on {number}", basis))
    rate = annual_rate(policy, inv)
    if rate is not None:
        pct, how = rate
        # Only months that are over: the last one is charged when it ends.
        month_end = as_of.replace(day=1) - timedelta(days=1)
        start = max(inv.due_on + timedelta(days=1), policy.charge_from or date.min)
        for y, m in _months(start, month_end):
            period = f"{y:04d}-{m:02d}"
            if ("interest", period) in inv.assessed:
                continue
            amount, days = interest_for_month(inv, pct, y, m, policy.charge_from)
            if days:
                wanted.append(
                    (
                        "interest",
                        period,
                        amount,
                        f"Interest on {number} for {month_name(period)}",
                        f"{how} on the overdue balance for {days} days of {month_name(period)}",
                    )
                )
    room, cap = None, 0
    if policy.cap is not None:
        cap = _round(_from_home(policy.cap, inv), inv.currency).minor
        room = max(cap - sum(inv.assessed.values()), 0)
    decided = []
    for kind, period, raw, line, basis in wanted:
        if (kind, period) in inv.assessed:
            continue
        amount = _round(raw, inv.currency)
        if room is not None and amount.minor > room:
            amount = Money.from_minor(room, inv.currency)
            capped = Money.from_minor(cap, inv.currency).format()
            basis += f" (capped at {capped} an invoice)"
        if amount.minor <= 0:
            continue
        if room is not None:
            room -= amount.minor
        decided.append(
            Assessment(inv.invoice_id, inv.customer_id, kind, period, amount, line, basis)
        )
    return decided


def _uk_compensation_for(inv: InvoiceFacts, balance: Money) -> tuple[Decimal, str] | None:
    """The act's fixed sum, for invoices in pounds only: its sums are in pounds, and a debt in
    another currency is not charged a converted guess."""
    if inv.currency != "GBP":
        return None
    amount = uk_compensation(balance.amount)
    return amount, (
        f"the fixed compensation for a debt of {balance.format('en_GB')} under the Late Payment "
        "of Commercial Debts (Interest) Act 1998"
    )


def assess_all(
    invoices: Sequence[InvoiceFacts],
    policy: LateFeePolicy,
    as_of: date,
    exempt_customers: frozenset[int] = frozenset(),
) -> list[Assessment]:
    out: list[Assessment] = []
    for inv in invoices:
        out += assess(inv, policy, as_of, exempt=inv.customer_id in exempt_customers)
    return out


def policy_in_words(policy: LateFeePolicy, home_currency: str, *, foreign: bool = False) -> str:
    """The fee policy as one or two sentences for the payment terms on every reminder ("" when
    there is none). `foreign`: the reader's invoices are in another currency than the home one,
    in which a fee's amounts are converted at each invoice's own rate (and so said)."""
    if not policy.charges_anything:
        return ""
    after = (
        f"more than {policy.grace_days} days after the due date"
        if policy.grace_days
        else "after the due date"
    )
    parts = []
    if policy.uk:
        found = policy.base_rates[-1][1] if policy.base_rates else None
        rate = (
            f"8% a year over the Bank of England base rate (now {_pct(found)}%)"
            if found is not None
            else "8% a year over the Bank of England base rate"
        )
        parts.append(
            f"Invoices paid late carry statutory interest of {rate} and fixed compensation of "
            "£40, £70 or £100 by the size of the debt, under the Late Payment of Commercial "
            "Debts (Interest) Act 1998"
        )
    else:
        fee = []
        if policy.flat_fee:
            fee.append(Money.rounded(policy.flat_fee, home_currency).format())
        if policy.fee_percent:
            fee.append(f"{_pct(policy.fee_percent)}% of the overdue balance")
        if fee:
            parts.append(f"A late fee of {' plus '.join(fee)} is charged once {after}")
        if policy.annual_rate:
            parts.append(
                f"Overdue balances carry simple interest of {_pct(policy.annual_rate)}% a year, "
                "charged monthly"
            )
    text = ". ".join(parts) + "."
    if policy.cap is not None:
        text += (
            f" Charges on one invoice are capped at "
            f"{Money.rounded(policy.cap, home_currency).format()}."
        )
    if foreign and (policy.flat_fee or policy.cap is not None) and not policy.uk:
        text += (
            f" Amounts in {home_currency} are charged in the invoice's own currency at its "
            "exchange rate."
        )
    return text
