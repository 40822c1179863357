"""The demo ledger's file: what it holds reads back the same, one record to a line (a person
reading or grepping the file finds each invoice whole on its own line)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from arbridge.clock import FixedClock
from arbridge.connectors.demo.ledger import DemoLedger


def test_the_file_reads_back_the_same_with_one_record_to_a_line(tmp_path):
    state = {
        "name": "DemoBooks — Café",
        "seq": 3,
        "rates": {"USD": "1", "EUR": "1.0842"},
        "Customer": [{"Id": "1", "DisplayName": 'Granite "Landscaping"'}],
        "Invoice": [
            {"Id": "7", "Line": [{"Amount": "12.50"}], "TotalAmt": "12.50"},
            {"Id": "8", "Line": [], "TotalAmt": "0.00"},
        ],
        "CreditNote": [],
    }
    ledger = DemoLedger(tmp_path / "ledger.json", FixedClock(datetime(2026, 12, 1, tzinfo=UTC)))
    ledger.save_new(state)
    assert ledger.read() == state
    lines = (tmp_path / "ledger.json").read_text().splitlines()
    assert '{"Id": "7", "Line": [{"Amount": "12.50"}], "TotalAmt": "12.50"},' in lines
    assert '{"Id": "8", "Line": [], "TotalAmt": "0.00"}' in lines
    assert '"CreditNote": []' in lines
    with ledger.change() as changed:
        changed["Invoice"][1]["TotalAmt"] = "1.00"
    assert json.loads((tmp_path / "ledger.json").read_text())["Invoice"][1]["TotalAmt"] == "1.00"
