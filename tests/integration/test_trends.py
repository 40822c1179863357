"""The report's `trends`: each KPI for each of the last 12 calendar months (period = that month,
as of its last day), on the ledger worked out in tests/integration/test_kpis.py. T = 2026-11-24.
"""

from __future__ import annotations

from sqlalchemy import event

from arbridge.sync.insight_store import trends_list
from arbridge.sync.store import get_company, kpi_report
from arbridge.sync.trends_store import kpi_trends
from tests.integration.test_flags import ledger as flags_ledger
from tests.integration.test_insight import ledger as insight_ledger
from tests.integration.test_kpis import T, _ledger_of, ledger


def test_each_month_is_its_own_period_and_october_is_worked_out_by_hand(rt):
    ledger().build(rt)
    with rt.sessions() as s:
        company = get_company(s, "kpi")
        trends = trends_list(kpi_trends(s, company, T))
        assert [m["month"] for m in trends] == [
            "2025-11",
            "2025-12",
            *(f"2026-{m:02}" for m in range(1, 11)),
        ]
        # Each month agrees with the report run on its last day over its own days.
        september = kpi_report(s, company, T.replace(month=9, day=30), 30).rounded()
        assert {k: trends[10][k] for k in september} == september
    october = trends[-1]
    assert (october["start"], october["end"], october["days"]) == ("2026-10-01", "2026-10-31", 31)
    # October (N = 31): I1 was paid off by 09-25, so ar_begin (09-30) = 0.
    # On 10-31: I2 paid 10-30 (0 left); I4 EUR 123.45 = 133.84 (its part payment came 11-09);
    # I5 250.00 (credited 11-19): ar_end = 383.84, all due on or after 10-31 (current).
    # credit_sales: I2 500 + I4 133.84 + I5 250 = 883.84 (I3 was issued 11-14).
    # dso = best = 383.84 / 883.84 x 31 = 13.4628...; delinquent 0
    # cei = (0 + 883.84 - 383.84) / (0 + 883.84 - 383.84) x 100 = 100
    # ar_turnover = 883.84 x 365 / 31 / (383.84 / 2) = 54.2231...
    # countback: block 1 (10-02..10-31) = 883.84 >= 383.84: 30 x 383.84 / 883.84 = 13.0286...
    # closed in October: I2 on 10-30, 25 days after issue (10-05), before its due date 11-04.
    assert {k: october[k] for k in september} == {
        "dso": "13.46",
        "dso_countback": "13.03",
        "best_possible_dso": "13.46",
        "average_days_delinquent": "0.00",
        "cei": "100.00",
        "ar_turnover": "54.22",
        "average_days_to_pay": "25.00",
        "on_time_rate": "1.00",
    }
    # A year ago nothing had been issued: every ratio is null.
    assert trends[0]["dso"] is None and trends[0]["cei"] is None


def _statements(rt, slug: str) -> int:
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    with rt.sessions() as s:
        company = get_company(s, slug)
        event.listen(rt.engine, "before_cursor_execute", count)
        try:
            kpi_trends(s, company, T)
        finally:
            event.remove(rt.engine, "before_cursor_execute", count)
    return len(seen)


def test_trends_cost_five_queries_whatever_the_ledgers_size(rt):
    ledger().build(rt)
    _ledger_of(20, "twenty").build(rt)
    assert _statements(rt, "kpi") == _statements(rt, "twenty") == 5


def _each_month_as_the_report(rt, slug: str, as_of=T) -> None:
    with rt.sessions() as s:
        company = get_company(s, slug)
        fast = kpi_trends(s, company, as_of)
        for k in fast:
            assert k == kpi_report(s, company, k.end, k.days), k.end


def test_every_month_agrees_with_the_report_run_on_its_last_day(rt):
    ledger().build(rt)
    _ledger_of(20, "twenty").build(rt)
    insight_ledger().build(rt)
    flags_ledger().build(rt)
    for slug in ("kpi", "twenty", "insight", "flags"):
        _each_month_as_the_report(rt, slug)
    # On a month's last day that month is the last one.
    _each_month_as_the_report(rt, "insight", as_of=T.replace(day=30))


def test_every_month_of_the_demo_ledger_agrees_with_the_report(rt, demo_company):
    _each_month_as_the_report(rt, demo_company.slug)
