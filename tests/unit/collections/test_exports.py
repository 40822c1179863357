"""CSV exports: formula injection neutralised, numbers left as numbers."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from arbridge.collections.exports import safe_cell, to_csv


def test_cells_that_a_spreadsheet_would_read_as_formulas_get_an_apostrophe():
    for text in ("=1+1", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x")'):
        assert safe_cell(text) == "'" + text
    for text in ("Harbor Bakery", "a=b", " =1", "", "O'Brien"):
        assert safe_cell(text) == text
    assert safe_cell(Decimal("-50.00")) == "-50.00" and safe_cell(-3) == "-3"
    assert safe_cell(None) == ""


def test_to_csv_quotes_and_neutralises_every_row():
    text = to_csv(["Name", "Amount"], [["=cmd|' /C calc'!A0", Decimal("1.50")], ["A, B", None]])
    assert list(csv.reader(io.StringIO(text))) == [
        ["Name", "Amount"],
        ["'=cmd|' /C calc'!A0", "1.50"],
        ["A, B", ""],
    ]
