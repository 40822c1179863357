"""CSV exports of the owner's tables, safe to open in a spreadsheet.

A text cell that starts with =, +, -, @, a tab or a carriage return would be read as a formula
by Excel, LibreOffice or Google Sheets (OWASP "CSV injection"): such a cell gets a leading
apostrophe, which the spreadsheet shows as text. Numbers (int, Decimal) are written as they are:
a negative amount is a number, not a formula. Pure: rows in, text out.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
Cell = str | int | Decimal | None


def safe_cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, int | Decimal):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(c) for c in row])
    return out.getvalue()
