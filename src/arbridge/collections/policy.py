"""The owner's collections policy: defaults, and the settings page's stored choices over them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

DEFAULTS: dict[str, dict[str, Any]] = {
    "reminders": {"enabled": True, "max_per_week": 2},
    "payments": {
        "accept_card": True,
        "accept_ach": True,
        "discount_percent": None,
        "discount_days": None,
    },
    # Credit limits: the limit of a customer the owner set none for (None: no limit), how many
    # on-time payments in a row earn a proposal of a higher limit, and by how much (percent).
    "credit": {"default_limit": None, "on_time_run": 6, "raise_percent": "25"},
    "plans": {
        "enabled": False,
        "min_balance": "500.00",  # in the home currency; a balance of at least this may choose
        "max_installments": 3,
        # Good standing: when on, only customers with no open invoice more than
        # `good_standing_days` overdue and no defaulted plan may choose a plan.
        "good_standing_only": False,
        "good_standing_days": 30,
        "frequencies": ["month"],  # any of "week", "fortnight", "month"
        "deposit_percent": "0",
        "fee_amount": None,  # a fixed fee in the home currency
        "fee_percent": None,  # a fee as a percent of the balance
        "agreement_text": None,  # None: the stock text (collections.plans.DEFAULT_AGREEMENT)
    },
    # Late fees and interest (collections.late_fees reads them): amounts in the home currency.
    "late_fees": {
        "enabled": False,
        "preset": "custom",  # or "uk_statutory"
        "grace_days": 0,
        "flat_fee": None,
        "fee_percent": None,
        "annual_rate": None,  # percent a year
        "cap": None,
        "min_balance": None,
        "base_rates": [],  # [{"effective_on": "2026-08-07", "rate": "4.00"}], oldest first
        "quickbooks_item_id": None,  # the product/service a fee invoice's line names
        "xero_account_code": None,  # the revenue account a fee invoice's line posts to
    },
    # Invoice delivery: send every new invoice the day it appears (through the ledger's own
    # send); `auto_send_since` is the day the owner turned it on, so older invoices are not
    # sent all at once.
    "delivery": {"auto_send": False, "auto_send_since": None},
}

PLAN_FREQUENCIES = ("week", "fortnight", "month")


def auto_send_since(stored: Mapping[str, Any] | None) -> date | None:
    """The first issue date of the invoices sent automatically, or None when automatic sending
    is off (or its stored day cannot be read, so nothing is sent by mistake)."""
    d = merged(stored)["delivery"]
    if d.get("auto_send") is not True:
        return None
    try:
        return date.fromisoformat(str(d.get("auto_send_since")))
    except ValueError:
        return None


MAX_AGREEMENT_CHARS = 20_000


@dataclass(frozen=True)
class Policy:
    reminders_enabled: bool
    max_reminders_per_week: int
    accept_card: bool
    accept_ach: bool
    discount_percent: Decimal | None
    discount_days: int | None
    plans_enabled: bool
    plan_min_balance: Decimal
    plan_max_installments: int
    plan_good_standing_only: bool = False
    plan_good_standing_days: int = 30
    plan_frequencies: tuple[str, ...] = ("month",)
    plan_deposit_percent: Decimal = Decimal(0)
    plan_fee_amount: Decimal | None = None
    plan_fee_percent: Decimal | None = None
    plan_agreement_text: str | None = None  # None: the stock text
    credit_default_limit: Decimal | None = None  # in the home currency
    credit_on_time_run: int = 6
    credit_raise_percent: Decimal = Decimal(25)
    # Stored choices that could not be read (written by an older version, or by hand): each one
    # falls back to its default, and the settings page says which.
    problems: tuple[str, ...] = ()


def merged(stored: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    stored = stored if isinstance(stored, Mapping) else {}
    return {
        section: {
            **values,
            **(stored.get(section) if isinstance(stored.get(section), Mapping) else {}),
        }
        for section, values in DEFAULTS.items()
    }


class _Reader:
    """Reads stored values, each within its range, noting the ones it had to replace."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def whole(self, raw: Any, default: int | None, lo: int, hi: int, what: str) -> int | None:
        if raw is None or raw == "":
            return default
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | str | float):
                raise ValueError(raw)
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            value = int(raw)
        except (ValueError, OverflowError):
            value = None
        if value is None or not lo <= value <= hi:
            self.problems.append(f"{what} was not a number from {lo} to {hi}")
            return default
        return value

    def amount(self, raw: Any, default: Decimal | None, hi: Decimal, what: str) -> Decimal | None:
        if raw is None or raw == "":
            return default
        try:
            value = Decimal(str(raw)) if isinstance(raw, int | str | Decimal) else None
        except ArithmeticError:
            value = None
        if value is None or not value.is_finite() or not 0 <= value <= hi:
            self.problems.append(f"{what} was not an amount from 0 to {hi}")
            return default
        return value

    def choices(
        self, raw: Any, default: tuple[str, ...], allowed: tuple[str, ...], what: str
    ) -> tuple[str, ...]:
        """A non-empty choice among `allowed` (a list, or one string), in `allowed`'s order."""
        if raw is None or raw == "" or raw == []:
            return default
        items = [raw] if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple) or not all(i in allowed for i in items):
            self.problems.append(f"{what} were not among {', '.join(allowed)}")
            return default
        return tuple(a for a in allowed if a in items)

    def text(self, raw: Any, default: str | None, most: int, what: str) -> str | None:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return default
        if not isinstance(raw, str) or len(raw) > most:
            self.problems.append(f"{what} was not a text of at most {most} characters")
            return default
        return raw


def policy(stored: Mapping[str, Any] | None) -> Policy:
    s = merged(stored)
    r, p, pl = s["reminders"], s["payments"], s["plans"]
    read = _Reader()
    d, dpl = DEFAULTS["reminders"], DEFAULTS["plans"]
    max_per_week = read.whole(r["max_per_week"], d["max_per_week"], 0, 50, "Reminders per week")
    discount_percent = read.amount(
        p["discount_percent"], None, Decimal(100), "The early-payment discount"
    )
    discount_days = read.whole(p["discount_days"], None, 0, 3660, "The discount's days")
    plan_min_balance = read.amount(
        pl["min_balance"], Decimal(dpl["min_balance"]), Decimal(10) ** 12, "The plans' minimum"
    )
    plan_max_installments = read.whole(
        pl["max_installments"], dpl["max_installments"], 1, 120, "The plans' installments"
    )
    good_standing_days = read.whole(
        pl["good_standing_days"], dpl["good_standing_days"], 0, 3660, "The good standing's days"
    )
    deposit_percent = read.amount(
        pl["deposit_percent"], Decimal(dpl["deposit_percent"]), Decimal(99), "The plans' deposit"
    )
    fee_amount = read.amount(pl["fee_amount"], None, Decimal(10) ** 12, "The plans' fee")
    fee_percent = read.amount(pl["fee_percent"], None, Decimal(100), "The plans' fee percent")
    frequencies = read.choices(
        pl["frequencies"], tuple(dpl["frequencies"]), PLAN_FREQUENCIES, "The plans' frequencies"
    )
    agreement_text = read.text(
        pl["agreement_text"], None, MAX_AGREEMENT_CHARS, "The plans' agreement"
    )
    cr, dcr = s["credit"], DEFAULTS["credit"]
    credit_default_limit = read.amount(
        cr["default_limit"], None, Decimal(10) ** 12, "The default credit limit"
    )
    credit_on_time_run = read.whole(
        cr["on_time_run"], dcr["on_time_run"], 1, 100, "The on-time payments before a raise"
    )
    credit_raise_percent = read.amount(
        cr["raise_percent"], Decimal(dcr["raise_percent"]), Decimal(1000), "The limit's raise"
    )
    return Policy(
        reminders_enabled=bool(r["enabled"]),
        max_reminders_per_week=max_per_week if max_per_week is not None else d["max_per_week"],
        accept_card=bool(p["accept_card"]),
        accept_ach=bool(p["accept_ach"]),
        discount_percent=discount_percent or None,
        discount_days=discount_days or None,
        plans_enabled=bool(pl["enabled"]),
        plan_min_balance=plan_min_balance
        if plan_min_balance is not None
        else Decimal(dpl["min_balance"]),
        plan_max_installments=plan_max_installments
        if plan_max_installments is not None
        else dpl["max_installments"],
        plan_good_standing_only=bool(pl["good_standing_only"]),
        plan_good_standing_days=good_standing_days
        if good_standing_days is not None
        else dpl["good_standing_days"],
        plan_frequencies=frequencies,
        plan_deposit_percent=deposit_percent if deposit_percent is not None else Decimal(0),
        plan_fee_amount=fee_amount or None,
        plan_fee_percent=fee_percent or None,
        plan_agreement_text=agreement_text,
        credit_default_limit=credit_default_limit,
        credit_on_time_run=credit_on_time_run
        if credit_on_time_run is not None
        else dcr["on_time_run"],
        credit_raise_percent=credit_raise_percent
        if credit_raise_percent is not None
        else Decimal(dcr["raise_percent"]),
        problems=tuple(read.problems),
    )
