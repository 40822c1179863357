"""The collections KPIs (issue 12's Definitions) on small ledgers worked out by hand: each figure
is the report's, from `store.kpi_report` over rows synced the way a real ledger's are.

Today (T) is 2026-11-24 on the test clock. With the default 90-day period, start = T-89 and
ar_begin is the receivables on T-90. Amounts are USD unless said; EUR converts at 1.0842.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import event, update

from arbridge.sync.db import transaction
from arbridge.sync.model import PaymentAllocation
from arbridge.sync.store import aging_report, get_company, kpi_report, report_dict
from tests.builders import SmallCompany

T = date(2026, 11, 24)


def report(rt, slug: str, as_of: date = T, days: int = 90) -> dict:
    with rt.sessions() as s:
        company = get_company(s, slug)
        return report_dict(
            company, aging_report(s, company, as_of), kpi_report(s, company, as_of, days)
        )


def ledger() -> SmallCompany:
    """Five live invoices, a credit note that closes one, and a voided invoice and credit note.

    I1 1000.00 issued T-120 due T-90; 400.00 paid T-100, 600.00 paid T-60 (closed T-60, late)
    I2  500.00 issued T-50  due T-20; paid in full T-25            (closed T-25, on time)
    I3  300.00 issued T-10  due T+20; open
    I4  EUR 123.45 issued T-40 due T-10; EUR 23.45 paid T-15, EUR 100.00 open
    I5  250.00 issued T-30  due T;    CN1 250.00 issued T-5 applied to it (closed T-5, on time)
    V1  999.00 issued T-20, voided; CN2 77.00 issued T-3, voided: neither counts
    """
    return (
        SmallCompany(slug="kpi")
        .customer("C1", "Harbor Bakery")
        .customer("C2", "Cedar Studio", currency="EUR")
        .invoice("I1", "C1", "1000.00", days_overdue=90, terms_days=30)
        .invoice("I2", "C1", "500.00", days_overdue=20, terms_days=30)
        .invoice("I3", "C1", "300.00", days_overdue=-20, terms_days=30)
        .invoice("I4", "C2", "123.45", days_overdue=10, terms_days=30)
        .invoice("I5", "C1", "250.00", days_overdue=0, terms_days=30)
        .invoice("V1", "C1", "999.00", days_overdue=-10, terms_days=30, voided=True)
        .payment("I1", "400.00", days_ago=100)
        .payment("I1", "600.00", days_ago=60)
        .payment("I2", "500.00", days_ago=25)
        .payment("I4", "23.45", days_ago=15)
        .credit_note("CN1", "C1", "250.00", days_ago=5, applied={"I5": "250.00"})
        .credit_note("CN2", "C1", "77.00", days_ago=3, voided=True)
    )


# The ledger's KPIs on T over 90 days, worked out in the test below.
LEDGER_KPIS = {
    "dso": "39.36",
    "dso_countback": "42.17",
    "best_possible_dso": "28.91",
    "average_days_delinquent": "10.45",
    "cei": "91.21",
    "ar_turnover": "7.51",
    "average_days_to_pay": "36.67",
    "on_time_rate": "0.67",
}


def kpi_fields(data: dict) -> dict:
    return {
        k: data[k]
        for k in (
            "dso",
            "dso_countback",
            "best_possible_dso",
            "average_days_delinquent",
            "cei",
            "ar_turnover",
            "average_days_to_pay",
            "on_time_rate",
        )
    }


def test_every_kpi_on_a_small_ledger_matches_the_hand_worked_figures(rt):
    ledger().build(rt)
    data = report(rt, "kpi")
    assert data["kpi_period"] == {"start": "2026-08-27", "end": "2026-11-24", "days": 90}
    # ar_begin (T-90): only I1 was issued, 400.00 of it paid              = 600.00
    # ar_end (T): I3 300.00 + I4 EUR 100.00 x 1.0842 = 108.42             = 408.42
    # ar_end_current (due >= T): I3 300.00 (I5 is due T but settled)      = 300.00
    # credit_sales (issued T-89..T): I2 500 + I3 300 + I4 EUR 123.45 x 1.0842 = 133.84
    #   + I5 250 - CN1 250 (V1 and CN2 voided: left out)                  = 933.84
    # dso = 408.42 / 933.84 x 90 = 39.3619...;  best = 300 / 933.84 x 90 = 28.9129...
    # average_days_delinquent = 108.42 / 933.84 x 90 = 10.4491...
    # cei = (600 + 933.84 - 408.42) / (600 + 933.84 - 300) x 100 = 1125.42 / 1233.84 x 100
    #     = 91.2127...
    # ar_turnover = 933.84 x 365 / 90 / ((600 + 408.42) / 2) = 7.5112...
    # countback: block 1 (T-29..T) = I3 300 - CN1 250 = 50: 408.42 > 50, left 358.42, 30 days;
    #   block 2 (T-59..T-30) = I2 500 + I4 133.84 + I5 250 = 883.84 >= 358.42:
    #   30 + 30 x 358.42 / 883.84 = 42.1657...
    # closed in the period: I1 on T-60 (60 days after issue, after due), I2 on T-25 (25 days,
    #   on time), I5 by the credit note on T-5 (25 days, on time):
    #   average_days_to_pay = (60 + 25 + 25) / 3 = 36.666...; on_time_rate = 2 / 3
    assert kpi_fields(data) == LEDGER_KPIS
    # The existing fields keep their meaning: aging from the open balances (I3 + I4).
    assert data["open_balance"] == "408.42" and data["open_invoices"] == 2


def test_a_past_as_of_date_counts_what_was_open_then(rt):
    ledger().build(rt)
    data = report(rt, "kpi", as_of=T - timedelta(days=30))
    # Period T-119..T-30 (2026-07-28..2026-10-25); ar_begin on T-120, when I1 was just issued
    # = 1000.00. At T-30: I1 paid off (T-100, T-60); I2 500.00 (paid T-25, later), I4 EUR 123.45
    # = 133.84 (part paid T-15, later), I5 250.00 (credit T-5, later): ar_end = 883.84, all due
    # on or after T-30, so ar_end_current = 883.84. credit_sales = I2 + I4 + I5 = 883.84 (I1 was
    # issued T-120, the day before the period; CN1 comes later).
    # dso = best = 883.84 / 883.84 x 90 = 90; delinquent 0; cei = 1000 / 1000 x 100 = 100
    # ar_turnover = 883.84 x 365 / 90 / ((1000 + 883.84) / 2) = 3.8054...
    # countback: block 1 (T-59..T-30) = 883.84 = what is left: 30 x 1 = 30
    # closed in the period: I1 on T-60, 60 days, after its due date T-90
    assert data["kpi_period"] == {"start": "2026-07-28", "end": "2026-10-25", "days": 90}
    assert kpi_fields(data) == {
        "dso": "90.00",
        "dso_countback": "30.00",
        "best_possible_dso": "90.00",
        "average_days_delinquent": "0.00",
        "cei": "100.00",
        "ar_turnover": "3.81",
        "average_days_to_pay": "60.00",
        "on_time_rate": "0.00",
    }


def test_no_net_credit_sales_leaves_the_dso_figures_null_and_a_long_countback_null(rt):
    (
        SmallCompany(slug="quiet")
        .customer("C1", "Harbor Bakery")
        .invoice("OLD", "C1", "100.00", days_overdue=170, terms_days=30)  # issued T-200
        .credit_note("CN1", "C1", "50.00", days_ago=10)  # unapplied credit
        .build(rt)
    )
    data = report(rt, "quiet")
    # ar_begin = ar_end = 100.00 (OLD, open throughout); ar_end_current = 0 (overdue);
    # credit_sales = -50.00 (CN1 only) <= 0: dso, best and delinquent are null.
    # cei = (100 - 50 - 100) / (100 - 50 - 0) x 100 = -100
    # ar_turnover = -50 x 365 / 90 / 100 = -2.0277...
    # countback: block 1 = -50: left 150, 30 days; blocks 2-6 have no sales: 180 days; block 7
    #   (T-209..T-180) = 100: left 50, 210 days; blocks 8-12 nothing: never exhausted, null.
    # Nothing closed: days to pay and on-time rate null.
    assert kpi_fields(data) == {
        "dso": None,
        "dso_countback": None,
        "best_possible_dso": None,
        "average_days_delinquent": None,
        "cei": "-100.00",
        "ar_turnover": "-2.03",
        "average_days_to_pay": None,
        "on_time_rate": None,
    }


def test_a_cei_with_nothing_to_collect_is_null_and_a_30_day_period(rt):
    (
        SmallCompany(slug="new")
        .customer("C1", "Harbor Bakery")
        .invoice("I1", "C1", "100.00", days_overdue=-25, terms_days=30)  # issued T-5
        .build(rt)
    )
    data = report(rt, "new", days=30)
    # Period T-29..T. ar_begin = 0, credit_sales = 100, ar_end = ar_end_current = 100:
    # cei's denominator 0 + 100 - 100 = 0, so null. dso = best = 100 / 100 x 30 = 30.
    # ar_turnover = 100 x 365 / 30 / ((0 + 100) / 2) = 24.333...
    # countback: block 1 = 100 >= 100: 30 x 100 / 100 = 30.
    assert data["kpi_period"] == {"start": "2026-10-26", "end": "2026-11-24", "days": 30}
    assert kpi_fields(data) == {
        "dso": "30.00",
        "dso_countback": "30.00",
        "best_possible_dso": "30.00",
        "average_days_delinquent": "0.00",
        "cei": None,
        "ar_turnover": "24.33",
        "average_days_to_pay": None,
        "on_time_rate": None,
    }


def test_a_365_day_period_reaches_back_a_year(rt):
    ledger().build(rt)
    data = report(rt, "kpi", days=365)
    # Period T-364..T: ar_begin = 0 (nothing issued by T-365). credit_sales = I1 1000 + 933.84
    # = 1933.84. ar_end 408.42, current 300.
    # dso = 408.42 / 1933.84 x 365 = 77.0856...; best = 300 / 1933.84 x 365 = 56.6231...;
    # delinquent = 108.42 / 1933.84 x 365 = 20.4634...
    # cei = (0 + 1933.84 - 408.42) / (0 + 1933.84 - 300) x 100 = 1525.42 / 1633.84 x 100
    #     = 93.3641...
    # ar_turnover = 1933.84 x 365 / 365 / (408.42 / 2) = 9.4698...
    # countback as at 90 days (it does not depend on the period): 42.17
    # closed in the period: I1 (60 days, late), I2 and I5 as before: 36.67, 0.67
    assert data["kpi_period"] == {"start": "2025-11-25", "end": "2026-11-24", "days": 365}
    assert kpi_fields(data) == {
        "dso": "77.09",
        "dso_countback": "42.17",
        "best_possible_dso": "56.62",
        "average_days_delinquent": "20.46",
        "cei": "93.36",
        "ar_turnover": "9.47",
        "average_days_to_pay": "36.67",
        "on_time_rate": "0.67",
    }


def _ledger_of(n: int, slug: str) -> SmallCompany:
    books = SmallCompany(slug=slug).customer("C1", "Harbor Bakery")
    books.customer("C2", "Cedar Studio", currency="EUR")
    for i in range(n):
        books.invoice(f"I{i}", "C1", "100.00", days_overdue=i * 7 - 40, terms_days=30)
        books.invoice(f"E{i}", "C2", "80.00", days_overdue=i * 5 - 20, terms_days=30)
        books.payment(f"I{i}", "40.00", days_ago=i)
        books.payment(f"I{i}", "60.00", days_ago=i // 2)
        books.credit_note(f"CN{i}", "C2", "10.00", days_ago=i, applied={f"E{i}": "10.00"})
    return books


def _kpi_statements(rt, slug: str) -> int:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    with rt.sessions() as s:
        company = get_company(s, slug)
        event.listen(rt.engine, "before_cursor_execute", count)
        try:
            kpi_report(s, company, T, 90)
        finally:
            event.remove(rt.engine, "before_cursor_execute", count)
    return len(statements)


def test_the_kpis_cost_five_queries_with_two_invoices_or_forty(rt):
    _ledger_of(1, "one").build(rt)
    _ledger_of(20, "twenty").build(rt)
    assert _kpi_statements(rt, "one") == _kpi_statements(rt, "twenty") == 5


def test_an_allocation_without_a_date_counts_on_its_payment_or_credit_date(rt):
    books = ledger().build(rt)
    with transaction(rt.sessions) as s:
        s.execute(
            update(PaymentAllocation)
            .where(PaymentAllocation.company_id == books.company.id)
            .values(applied_on=None)
        )
    # The payments' received dates and CN1's issue date are the allocations' own dates here.
    assert kpi_fields(report(rt, "kpi")) == LEDGER_KPIS


def test_invoices_alike_in_every_date_count_once_each(rt):
    (
        SmallCompany(slug="twins")
        .customer("C1", "Harbor Bakery")
        .invoice("A1", "C1", "100.00", days_overdue=10, terms_days=30)  # issued T-40, due T-10
        .invoice("A2", "C1", "100.00", days_overdue=10, terms_days=30)  # the same dates
        .invoice("B1", "C1", "100.00", days_overdue=30, terms_days=30)  # issued T-60, due T-30
        .payment("A1", "100.00", days_ago=20)
        .payment("A2", "100.00", days_ago=20)
        .payment("B1", "100.00", days_ago=20)
        .build(rt)
    )
    data = report(rt, "twins")
    # A1 and A2 took 20 days each and were on time, B1 took 40 and was late:
    # average_days_to_pay = (20 + 20 + 40) / 3 = 26.666...; on_time_rate = 2 / 3.
    # Nothing owed: dso 0 / 300 x 90 = 0; countback: 0 left against block 1 = 0 days.
    # cei = (0 + 300 - 0) / (0 + 300 - 0) x 100 = 100; ar_turnover null (no average AR).
    assert kpi_fields(data) == {
        "dso": "0.00",
        "dso_countback": "0.00",
        "best_possible_dso": "0.00",
        "average_days_delinquent": "0.00",
        "cei": "100.00",
        "ar_turnover": None,
        "average_days_to_pay": "26.67",
        "on_time_rate": "0.67",
    }
