"""Money: a Decimal amount in one currency, exact to that currency's exponent. Never float."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache, lru_cache

from babel import Locale
from babel.numbers import (
    NumberPattern,
    format_currency,
    get_currency_precision,
    get_currency_symbol,
    list_currencies,
)

DEFAULT_ROUNDING = ROUND_HALF_UP


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


@lru_cache(maxsize=1024)  # a handful of codes, asked for every amount a sync maps
def check_currency(code: str) -> str:
    code = (code or "").strip().upper()
    if code not in _known_currencies():
        raise ValueError(f"unknown currency code {code!r}")
    return code


@cache
def exponent(currency: str) -> int:
    """Digits after the decimal point for the currency (JPY 0, USD 2, KWD 3), from CLDR via Babel."""
    return get_currency_precision(check_currency(currency))


@lru_cache(maxsize=1024)
def _quantum(currency: str) -> tuple[str, Decimal]:
    """The checked code and its smallest unit (Decimal('0.01') for USD)."""
    code = check_currency(currency)
    return code, Decimal(1).scaleb(-exponent(code))


def to_decimal(value: Decimal | int | str) -> Decimal:
    if isinstance(value, float):
        raise TypeError("money is never a float: pass a Decimal, an int or a string")
    if isinstance(value, bool):
        raise TypeError("a bool is not an amount")
    try:
        result = Decimal(value)
    except (InvalidOperation, ValueError) as e:
        raise ValueError(f"not an amount: {value!r}") from e
    if not result.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return result


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        amount = self.amount
        if type(amount) is not Decimal or not amount.is_finite():
            amount = to_decimal(amount)  # refuses floats, bools, NaN and infinity
        currency, quantum = _quantum(self.currency)
        exact = amount.quantize(quantum)
        if exact != amount:
            raise ValueError(
                f"{amount} has more digits than {currency} allows; round it explicitly first"
            )
        object.__setattr__(self, "amount", exact)
        object.__setattr__(self, "currency", currency)

    @classmethod
    def rounded(
        cls, amount: Decimal | int | str, currency: str, rounding: str = DEFAULT_ROUNDING
    ) -> Money:
        quantum = _quantum(currency)[1]
        return cls(to_decimal(amount).quantize(quantum, rounding=rounding), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        if not isinstance(minor, int) or isinstance(minor, bool):
            raise TypeError("minor units are an int")
        return cls(Decimal(minor).scaleb(-exponent(currency)), currency)

    @property
    def minor(self) -> int:
        """Integer minor units (cents; yen for JPY): the one conversion used for storage and Stripe."""
        return int(self.amount.scaleb(exponent(self.currency)))

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def __bool__(self) -> bool:
        return self.amount != 0

    def convert(self, rate: Decimal, to_currency: str, rounding: str = DEFAULT_ROUNDING) -> Money:
        """Multiply by `rate` (units of `to_currency` per one unit of ours) and round once."""
        if self.currency == check_currency(to_currency):
            return self
        return Money.rounded(self.amount * to_decimal(rate), to_currency, rounding)

    def allocate(self, parts: int) -> list[Money]:
        """Split into `parts` amounts that differ by at most one minor unit and add up exactly."""
        if parts < 1:
            raise ValueError("allocate needs at least one part")
        base, leftover = divmod(self.minor, parts)
        return [
            Money.from_minor(base + (1 if i < leftover else 0), self.currency) for i in range(parts)
        ]

    def format(self, locale: str = "en_US") -> str:
        """The amount as the locale writes it, exactly as babel's `format_currency` does (a
        test compares them for every currency): the pattern, its precision and the symbol
        are looked up once per currency and locale, not for every amount (a daily run formats
        tens of thousands of totals), and an amount already written is written again from memory
        (most of a run's totals repeat)."""
        return _written(str(self.amount), self.currency, locale)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


@lru_cache(maxsize=4096)
def _written(amount: str, currency: str, locale: str) -> str:
    """`Money.format` of the amount (its exact text: "-0.00" is not "0.00")."""
    value = Decimal(amount)
    style = _currency_style(currency, locale)
    if style is None:
        return format_currency(value, currency, locale=_locale(locale))
    pattern, symbol = style
    written = pattern.apply(value, _locale(locale), currency=None, currency_digits=False)
    return written.replace("¤", symbol)


@cache
def _locale(name: str) -> Locale:
    """A locale parsed once."""
    return Locale.parse(name)


@cache
def _currency_style(currency: str, locale: str) -> tuple[NumberPattern, str] | None:
    """The locale's currency pattern at the currency's precision, and its symbol; None for a
    pattern that spells the currency out (left to babel)."""
    pattern = _locale(locale).currency_formats["standard"]
    if "¤¤" in "".join((*pattern.prefix, *pattern.suffix)):
        return None
    digits = get_currency_precision(currency)
    fixed = copy.copy(pattern)
    fixed.frac_prec = (digits, digits)
    return fixed, get_currency_symbol(currency, _locale(locale))


def total(amounts: Iterable[Money], currency: str) -> Money:
    result = Money.zero(currency)
    for amount in amounts:
        result += amount
    return result
