"""`arbridge report` with the collections KPIs: the JSON fields and the table on a small ledger
worked out by hand (tests/integration/test_kpis.py), and --period-days refused when it is not a
whole number of days from 1 to 3660."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from arbridge.clock import FixedClock
from arbridge.runtime import Runtime
from tests.cli.conftest import Instance, fresh_instance
from tests.conftest import NOW
from tests.integration.test_kpis import LEDGER_KPIS, ledger

KPIS = tuple(LEDGER_KPIS)


@pytest.fixture(scope="module")
def instance(tmp_path_factory) -> Iterator[Instance]:
    with fresh_instance(tmp_path_factory.mktemp("kpis")) as instance:
        instance.ok("init")
        rt = Runtime.open(instance.settings(), FixedClock(NOW))
        try:
            ledger().build(rt)
        finally:
            rt.close()
        yield instance


def report(instance: Instance, *args: str) -> dict:
    return json.loads(
        instance.ok(
            "report", "--company", "kpi", "--as-of", "2026-11-24", "--format", "json", *args
        )
    )


def test_report_json_has_the_kpi_period_and_every_kpi(instance: Instance):
    data = report(instance)
    assert data["kpi_period"] == {"start": "2026-08-27", "end": "2026-11-24", "days": 90}
    assert {k: data[k] for k in KPIS} == LEDGER_KPIS
    # The fields that were there before keep their names and meaning.
    assert data["as_of"] == "2026-11-24"
    assert data["open_balance"] == "408.42"
    assert set(data["aging"]) == {"current", "1_30", "31_60", "61_90", "over_90"}


def test_period_days_sets_the_period(instance: Instance):
    data = report(instance, "--period-days", "365")
    assert data["kpi_period"] == {"start": "2025-11-25", "end": "2026-11-24", "days": 365}
    assert data["dso"] == "77.09"  # worked out in tests/integration/test_kpis.py
    one = report(instance, "--period-days", "1")
    assert one["kpi_period"] == {"start": "2026-11-24", "end": "2026-11-24", "days": 1}
    # Nothing was issued on T: no net credit sales, so no DSO.
    assert one["dso"] is None and one["best_possible_dso"] is None
    assert report(instance, "--period-days", "3660")["kpi_period"]["days"] == 3660


def test_report_table_shows_the_same_kpis(instance: Instance):
    out = instance.ok("report", "--company", "kpi", "--as-of", "2026-11-24", "--format", "table")
    assert "  KPIs, 90 days from 2026-08-27 to 2026-11-24" in out
    for label, value in [
        ("DSO (days)", "39.36"),
        ("Countback DSO (days)", "42.17"),
        ("Best possible DSO (days)", "28.91"),
        ("Avg days delinquent", "10.45"),
        ("CEI (%)", "91.21"),
        ("AR turnover (per year)", "7.51"),
        ("Avg days to pay", "36.67"),
        ("On-time rate (0-1)", "0.67"),
    ]:
        assert any(
            line.startswith(f"    {label}") and line.endswith(f" {value}")
            for line in out.splitlines()
        ), (label, out)
    one = instance.ok("report", "--company", "kpi", "--as-of", "2026-11-24", "--period-days", "1")
    assert any(
        line.startswith("    DSO (days)") and line.endswith(" n/a") for line in one.splitlines()
    ), one


@pytest.mark.parametrize(
    "value", ["0", "-5", "3661", "abc", "1.5", "", "３０", "99999999999999999999999"]
)
def test_a_bad_period_days_is_a_usage_error_not_a_traceback(instance: Instance, value):
    result = instance.run("report", "--company", "kpi", "--period-days", value)
    assert result.returncode == 2, (value, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: Invalid value for '--period-days'"), result.stderr


@pytest.mark.subprocess
def test_period_days_through_the_console_script(instance: Instance):
    result = instance.run("report", "--company", "kpi", "--period-days", "0")
    assert result.returncode == 2 and "between 1 and 3660" in result.stderr, result.stderr
    data = json.loads(
        instance.ok(
            "report",
            "--company",
            "kpi",
            "--as-of",
            "2026-11-24",
            "--period-days",
            "30",
            "--format",
            "json",
        )
    )
    assert data["kpi_period"] == {"start": "2026-10-26", "end": "2026-11-24", "days": 30}
