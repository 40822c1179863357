"""`arbridge report` with the forecast and the flags: the JSON fields and the table on the
ledger worked out by hand in tests/integration/test_insight.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import pytest

from arbridge.clock import FixedClock
from arbridge.collections.kpis import KPI_FIELDS
from arbridge.runtime import Runtime
from tests.cli.conftest import Instance, fresh_instance
from tests.conftest import NOW
from tests.integration.test_flags import build as build_flags
from tests.integration.test_insight import ledger


@pytest.fixture(scope="module")
def instance(tmp_path_factory) -> Iterator[Instance]:
    with fresh_instance(tmp_path_factory.mktemp("insight")) as instance:
        instance.ok("init")
        rt = Runtime.open(instance.settings(), FixedClock(NOW))
        try:
            ledger().build(rt)
            build_flags(rt)
        finally:
            rt.close()
        yield instance


def test_report_json_has_the_forecast_and_the_flags(instance: Instance):
    data = json.loads(
        instance.ok("report", "--company", "insight", "--as-of", "2026-11-24", "--format", "json")
    )
    forecast = data["forecast"]
    assert set(forecast) == {"weeks", "later", "projected_dso"}
    assert forecast["weeks"][0] == {"start": "2026-11-24", "end": "2026-11-30", "amount": "290.00"}
    assert [w["amount"] for w in forecast["weeks"]][:5] == [
        "290.00",
        "0.00",
        "210.84",
        "0.00",
        "110.00",
    ]
    assert forecast["later"] == "133.84" and forecast["projected_dso"] == "45.94"
    # The weeks and later add up to the open balance (ar_end on today) to the cent.
    total = sum(map(Decimal, [w["amount"] for w in forecast["weeks"]] + [forecast["later"]]))
    assert str(total) == data["open_balance"] == "744.68"
    assert data["flags"] == []


def test_report_table_shows_the_forecast(instance: Instance):
    out = instance.ok("report", "--company", "insight", "--as-of", "2026-11-24")
    lines = out.splitlines()
    assert "  Cash forecast (each open invoice on its due date + the customer's lateness)" in lines
    assert any(
        line.startswith("    2026-12-08 to 2026-12-14") and line.endswith(" $210.84")
        for line in lines
    ), out
    assert any(line.startswith("    Later") and line.endswith(" $133.84") for line in lines), out
    assert any(
        line.startswith("    Projected DSO (days)") and line.endswith(" 45.94") for line in lines
    ), out
    assert "  Flagged customers" in lines and "    none" in lines


def test_report_shows_the_flags_in_json_and_in_the_table(instance: Instance):
    data = json.loads(
        instance.ok("report", "--company", "flags", "--as-of", "2026-11-24", "--format", "json")
    )
    # Worked out in tests/integration/test_flags.py.
    assert [(f["customer_id"], f["kind"]) for f in data["flags"]] == [
        ("L1", "near_limit"),
        ("N1", "near_limit"),
        ("L2", "over_limit"),
        ("P1", "partials_growing"),
        ("S1", "slowing"),
    ]
    out = instance.ok("report", "--company", "flags", "--as-of", "2026-11-24")
    assert (
        "    Slow Co (S1): slowing, paid the last 3 invoices 18 days late on average, "
        "against 4 before"
    ) in out.splitlines()


def test_report_has_twelve_months_of_trends_in_json_and_the_table(instance: Instance):
    data = json.loads(
        instance.ok("report", "--company", "insight", "--as-of", "2026-11-24", "--format", "json")
    )
    months = data["trends"]
    assert [m["month"] for m in months][::11] == ["2025-11", "2026-10"]
    assert set(months[-1]) == {
        "month",
        "start",
        "end",
        "days",
        "dso",
        "dso_countback",
        "best_possible_dso",
        "average_days_delinquent",
        "cei",
        "ar_turnover",
        "average_days_to_pay",
        "on_time_rate",
    }
    out = instance.ok("report", "--company", "insight", "--as-of", "2026-11-24")
    assert "  KPIs by month (each month its own period)" in out.splitlines()
    assert any(line.startswith("    2026-10   ") for line in out.splitlines()), out


def test_the_tables_months_show_every_kpi_the_json_has(instance: Instance):
    args = ("report", "--company", "insight", "--as-of", "2026-11-24")
    data = json.loads(instance.ok(*args, "--format", "json"))
    lines = instance.ok(*args).splitlines()
    start = lines.index("  KPIs by month (each month its own period)")
    header = lines[start + 1].split()
    assert header[0] == "Month" and len(lines[start + 2 : start + 14]) == 12
    for month, line in zip(data["trends"], lines[start + 2 : start + 14], strict=True):
        cells = line.split()
        assert cells[0] == month["month"]
        assert cells[1:] == [month[k] or "n/a" for k in KPI_FIELDS], line
    # One column per KPI, named.
    assert len(lines[start + 1].split("  ")) > 1 and "On-time" in lines[start + 1]
