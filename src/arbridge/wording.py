"""Counts as a person reads them: "1 invoice", "3 invoices", never "invoice(s)"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """'1 invoice', '0 invoices', '2 invoices'; `plural` where adding "s" is wrong
    ('1 reply', '2 replies'). A noun of several words is counted by its last word
    ('3 reminder emails')."""
    return f"{n} {noun if n in (1, -1) else plural or noun + 's'}"


def verb(n: int, singular: str, plural: str) -> str:
    """The verb that agrees with a count: verb(1, 'needs', 'need') is 'needs'."""
    return singular if n in (1, -1) else plural


def days_text(n: int) -> str:
    """'1 day', '3 days': a count of days as the pages, reasons and commands write it."""
    return counted(n, "day")
