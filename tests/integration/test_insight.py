"""Customer lateness, the 13-week cash forecast and projected DSO (issue 12's Definitions) on a
small ledger worked out by hand, through `sync.insight_store` over rows synced the way a real
ledger's are.

Today (T) is 2026-11-24 on the test clock; the KPI period is 90 days (T-89..T). An invoice
built with `days_overdue=X, terms_days=K` is due T-X and issued T-X-K; a payment `days_ago=Y`
is applied on T-Y, so an invoice paid in full that way closed X - Y days late.
EUR converts at 1.0842.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import event

from arbridge.sync.insight_store import insight, insight_dict
from arbridge.sync.store import get_company, kpi_report
from tests.builders import SmallCompany

T = date(2026, 11, 24)


def day(n: int) -> str:
    return (T + timedelta(days=n)).isoformat()


def ledger() -> SmallCompany:
    """
    C1 Harbor Bakery (USD), lateness on T = (10 + 5 + 6) / 3 = 7:
      A1 100.00 due T-100, paid T-90: closed 10 days late
      A2 100.00 due T-60,  paid T-55: 5 late
      A3 100.00 due T-40 (issued T-70), 40.00 paid T-45, 60.00 paid T-34: closed T-34, 6 late
      O1 200.00 due T+10 (issued T-20), open: expected T+17
      O2 300.00 due T-30 (issued T-60), 50.00 paid T-10: 250.00 open, expected T-23 -> T
    C2 Cedar Studio (EUR), lateness on T = 20 (E0 closed T-370, before the 365 days):
      E0 EUR 50.00 due T-400, paid T-370: 30 late, a year and more ago
      E1 EUR 100.00 due T-200, paid T-180: 20 late
      E2 EUR 123.45 due T+80 (issued T-40), open: 133.84 at 1.0842, expected T+100
      E3 EUR 10.00 due T-5 (issued T-35), open: 10.84, expected T+15
    C3 Dune Supply (USD), nothing closed: lateness 0
      D1 80.00 due T+29 (issued T-1), CN1 30.00 (T-2) applied: 50.00 open, expected T+29
      D3 60.00 due T+30 (issued T), open, expected T+30
      V1 200.00 due T+5, voided: left out
    C4 Elm Goods (USD) pays early, lateness = (-3 - 2) / 2 = -2.5 -> -3 (halves away from 0):
      F1 100.00 due T-20 (issued T-50), paid T-23: -3
      F2 100.00 due T-10 (issued T-40), paid T-12: -2
      F3 40.00 due T+2 (issued T-28), open: expected T-1 -> T
    """
    return (
        SmallCompany(slug="insight")
        .customer("C1", "Harbor Bakery")
        .customer("C2", "Cedar Studio", currency="EUR")
        .customer("C3", "Dune Supply")
        .customer("C4", "Elm Goods")
        .invoice("A1", "C1", "100.00", days_overdue=100)
        .invoice("A2", "C1", "100.00", days_overdue=60)
        .invoice("A3", "C1", "100.00", days_overdue=40)
        .invoice("O1", "C1", "200.00", days_overdue=-10)
        .invoice("O2", "C1", "300.00", days_overdue=30)
        .payment("A1", "100.00", days_ago=90)
        .payment("A2", "100.00", days_ago=55)
        .payment("A3", "40.00", days_ago=45)
        .payment("A3", "60.00", days_ago=34)
        .payment("O2", "50.00", days_ago=10)
        .invoice("E0", "C2", "50.00", days_overdue=400)
        .invoice("E1", "C2", "100.00", days_overdue=200)
        .invoice("E2", "C2", "123.45", days_overdue=-80, terms_days=120)
        .invoice("E3", "C2", "10.00", days_overdue=5)
        .payment("E0", "50.00", days_ago=370)
        .payment("E1", "100.00", days_ago=180)
        .invoice("D1", "C3", "80.00", days_overdue=-29)
        .invoice("D3", "C3", "60.00", days_overdue=-30)
        .invoice("V1", "C3", "200.00", days_overdue=-5, voided=True)
        .credit_note("CN1", "C3", "30.00", days_ago=2, applied={"D1": "30.00"})
        .invoice("F1", "C4", "100.00", days_overdue=20)
        .invoice("F2", "C4", "100.00", days_overdue=10)
        .invoice("F3", "C4", "40.00", days_overdue=-2)
        .payment("F1", "100.00", days_ago=23)
        .payment("F2", "100.00", days_ago=12)
    )


def report(rt, slug: str, as_of: date = T, days: int = 90) -> tuple[dict, dict]:
    """(the report's forecast and flags, each customer's lateness by ledger id)."""
    with rt.sessions() as s:
        company = get_company(s, slug)
        kpi = kpi_report(s, company, as_of, days)
        data = insight(s, company, as_of, kpi)
        late = {data.customers[cid].source_id: n for cid, n in data.lateness.items()}
        return insight_dict(data), late


def test_each_customers_lateness_is_the_rounded_mean_over_the_last_365_days(rt):
    ledger().build(rt)
    _, late = report(rt, "insight")
    # C1 (10 + 5 + 6) / 3 = 7; C2 20 (E0's 30 closed T-370, outside T-364..T);
    # C4 (-3 - 2) / 2 = -2.5 -> -3; C3 closed nothing (0, not listed).
    assert late == {"C1": 7, "C2": 20, "C4": -3}


def test_the_forecast_puts_each_open_invoice_in_its_week_and_adds_up_to_ar_end(rt):
    ledger().build(rt)
    data, _ = report(rt, "insight")
    weeks = data["forecast"]["weeks"]
    assert len(weeks) == 13
    assert weeks[0] == {"start": day(0), "end": day(6), "amount": "290.00"}
    assert weeks[12] == {"start": day(84), "end": day(90), "amount": "0.00"}
    # Week 1 (T..T+6): O2 250.00 (expected T-23, passed: T) + F3 40.00 (T-1 -> T)   = 290.00
    # Week 3 (T+14..T+20): O1 200.00 (T+17) + E3 10.84 (T+15)                       = 210.84
    # Week 5 (T+28..T+34): D1 50.00 (T+29) + D3 60.00 (T+30)                        = 110.00
    # Later (after T+90): E2 133.84 (T+100)
    amounts = [w["amount"] for w in weeks]
    assert amounts == ["290.00", "0.00", "210.84", "0.00", "110.00"] + ["0.00"] * 8
    assert data["forecast"]["later"] == "133.84"
    # ar_end = 250 + 40 + 200 + 10.84 + 50 + 60 + 133.84 = 744.68 = 290 + 210.84 + 110 + 133.84
    with rt.sessions() as s:
        company = get_company(s, "insight")
        kpi = kpi_report(s, company, T, 90)
        fc = insight(s, company, T, kpi).forecast
        assert kpi.ar_end == sum((w.amount for w in fc.weeks), start=fc.later) == fc.ar_end
    # credit_sales (issued T-89..T): O1 200 + O2 300 + A3 100 + E2 133.84 + E3 10.84 + D1 80
    #   + D3 60 - CN1 30 + F1 100 + F2 100 + F3 40 = 1094.68 (A2 was issued T-90; V1 voided)
    # expected in the next 30 days (T..T+29): 290 + 210.84 + D1 50 = 550.84 (D3 on T+30 is not)
    # projected_dso = (744.68 - 550.84 + 1094.68 / 90 x 30) / 1094.68 x 90
    #               = (193.84 + 364.8933...) / 1094.68 x 90 = 45.9367...
    assert data["forecast"]["projected_dso"] == "45.94"


def test_at_a_past_date_the_forecast_uses_what_was_open_and_the_lateness_known_then(rt):
    ledger().build(rt)
    data, late = report(rt, "insight", as_of=T - timedelta(days=50))
    # On T-50 C1 had closed A1 (10 late, T-90) and A2 (5 late, T-55): (10 + 5) / 2 = 7.5 -> 8.
    # C2: E0 (T-370) and E1 (T-180) are both in T-414..T-50: (30 + 20) / 2 = 25.
    assert late == {"C1": 8, "C2": 25}
    # Open on T-50: A3 100.00 (its first payment came T-45), due T-40: expected T-32, 18 days
    # on, week 3; O2 300.00 (issued T-60, paid later), due T-30: T-22, 28 days on, week 5;
    # F1 100.00 (issued that very day), due T-20, C4 had closed nothing yet (lateness 0):
    # 30 days on, week 5 (T-22..T-16). Nothing else had been issued. ar_end = 500.00.
    amounts = [w["amount"] for w in data["forecast"]["weeks"]]
    assert amounts == ["0.00", "0.00", "100.00", "0.00", "400.00"] + ["0.00"] * 8
    assert data["forecast"]["later"] == "0.00"
    assert data["forecast"]["weeks"][0]["start"] == day(-50)
    # credit_sales (T-139..T-50): A1 (issued T-130) 100 + A2 (T-90) 100 + A3 (T-70) 100
    #   + O2 (T-60) 300 + F1 (T-50) 100 = 700; next 30 days (T-50..T-21): A3 100 + O2 300
    #   = 400 (F1, on T-20, is not)
    # projected_dso = (500 - 400 + 700 / 90 x 30) / 700 x 90 = 333.33... / 700 x 90 = 42.857...
    assert data["forecast"]["projected_dso"] == "42.86"


def test_without_net_credit_sales_projected_dso_is_null_and_a_30_day_period(rt):
    (
        SmallCompany(slug="quiet")
        .customer("C1", "Harbor Bakery")
        .invoice("OLD", "C1", "100.00", days_overdue=170)  # issued T-200, open
        .build(rt)
    )
    data, _ = report(rt, "quiet", days=30)
    # Nothing issued in T-29..T: credit_sales 0, projected_dso null. OLD (lateness 0) was due
    # T-170: expected today, week 1.
    assert data["forecast"]["projected_dso"] is None
    assert data["forecast"]["weeks"][0]["amount"] == "100.00"


def test_the_forecast_costs_the_same_queries_with_few_invoices_or_many(rt):
    ledger().build(rt)
    big = SmallCompany(slug="big").customer("C1", "Harbor Bakery")
    big.customer("C2", "Cedar Studio", currency="EUR")
    for i in range(30):
        big.invoice(f"I{i}", "C1", "100.00", days_overdue=i * 3 - 40)
        big.invoice(f"E{i}", "C2", "50.00", days_overdue=i * 2 - 20)
        big.payment(f"I{i}", "100.00", days_ago=max(i - 5, 0))
    big.build(rt)

    def statements(slug: str) -> int:
        seen: list[str] = []

        def count(_conn, _cursor, statement, *_args) -> None:
            seen.append(statement)

        with rt.sessions() as s:
            company = get_company(s, slug)
            kpi = kpi_report(s, company, T, 90)
            event.listen(rt.engine, "before_cursor_execute", count)
            try:
                insight(s, company, T, kpi)
            finally:
                event.remove(rt.engine, "before_cursor_execute", count)
        return len(seen)

    assert statements("insight") == statements("big") <= 6
