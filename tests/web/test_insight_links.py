"""The dashboard's figures link to the invoices behind them (the hand-worked ledger of
tests/integration/test_insight.py): each week of the cash forecast (and "later") to the
invoices list filtered to the invoices expected in it, which says what they are expected to
bring (the week's figure) and puts it in its CSV; each KPI, shown as the report has it, to the
open invoices, those not yet due, those issued or closed in the period."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from arbridge.sync.store import get_company, kpi_report
from tests.integration.test_insight import T, ledger
from tests.web.conftest import parse, sign_in

WEEK_FIGURES = {"1": "$290.00", "3": "$210.84", "5": "$110.00", "later": "$133.84", "2": "$0.00"}


def test_each_forecast_week_links_to_the_invoices_behind_its_figure(client, rt):
    books = ledger().build(rt)
    sign_in(client, rt, books.company)
    for url in ("/c/insight/", "/c/insight/insight"):
        page = parse(client.get(url).data)
        links = {
            a.attrs["data-week"]: a.attrs["href"]
            for a in page.find_all("a")
            if "data-week" in a.attrs
        }
        assert links == {
            **{str(i): f"/c/insight/invoices?expected={i}" for i in range(1, 14)},
            "later": "/c/insight/invoices?expected=later",
        }, url
    for which, figure in WEEK_FIGURES.items():
        page = parse(client.get(f"/c/insight/invoices?expected={which}").data)
        assert page.by_id("expected-total").text == figure, which
        assert page.by_id("expected-figure").text == figure, which
        shown = [Decimal(td.attrs["data-value"]) for td in page.find_all("td", cls="expected")]
        assert f"${sum(shown, Decimal(0)):,.2f}" == figure, which
        rows = list(
            csv.reader(
                io.StringIO(
                    client.get(f"/c/insight/invoices.csv?expected={which}").get_data(as_text=True)
                )
            )
        )
        assert rows[0][-1] == "Expected that week (USD)"
        assert f"${sum((Decimal(r[-1]) for r in rows[1:]), Decimal(0)):,.2f}" == figure, which
    week3 = parse(client.get("/c/insight/invoices?expected=3").data)
    assert sorted(a.text for a in week3.find_all("td", cls="number")) == ["INV-E3", "INV-O1"]
    # Each with the day it is expected: O1 due T+10 + C1's 7 = Dec 11; E3 T-5 + C2's 20 = Dec 9.
    expected_days = sorted(
        td.text.split("expected ")[1] for td in week3.find_all("td", cls="expected")
    )
    assert expected_days == ["Dec 11, 2026", "Dec 9, 2026"]


def test_an_unknown_week_is_the_plain_list(client, rt):
    books = ledger().build(rt)
    sign_in(client, rt, books.company)
    page = parse(client.get("/c/insight/invoices?expected=14").data)
    assert page.by_id("expected-week") is None
    assert page.find_all("td", cls="expected") == []


def test_the_dashboard_shows_every_kpi_of_the_report_and_links_to_their_invoices(client, rt):
    books = ledger().build(rt)
    sign_in(client, rt, books.company)
    with rt.sessions() as s:
        company = get_company(s, "insight")
        kpi = kpi_report(s, company, T, 90)
    page = parse(client.get("/c/insight/").data)
    for key, value in kpi.rounded().items():
        assert page.by_id(f"kpi-{key}").text == (value or "n/a"), key
    links = {a.text: a.attrs["href"] for a in page.by_id("kpis-period").find_all("a")}
    # ar_end and ar_end_current: the open invoices, those not yet due.
    assert links["$744.68"] == "/c/insight/invoices" and kpi.ar_end == Decimal("744.68")
    assert links[f"${kpi.ar_end_current:,.2f}"] == "/c/insight/invoices?bucket=current"
    # Closed in the period (T-89..T: Aug 27 .. Nov 24): A2 (issued T-90, closed T-55: 35 days, on time? due T-60:
    # no), A3 (issued T-70, closed T-34: 36, late), F1 (issued T-50, closed T-23: 27, early),
    # F2 (T-40 -> T-12: 28, early). A1 closed T-90, before the period; E1 T-180.
    closed = parse(client.get(links["the invoices closed from Aug 27, 2026 to Nov 24, 2026"]).data)
    numbers = sorted(td.text for td in closed.find_all("td", cls="number"))
    assert numbers == ["INV-A2", "INV-A3", "INV-F1", "INV-F2"]
    # (35 + 36 + 27 + 28) / 4 = 31.5 days; 2 of 4 on time.
    assert kpi.rounded()["average_days_to_pay"] == "31.50"
    assert kpi.rounded()["on_time_rate"] == "0.50"
    # Net credit sales: the invoices issued in the period less CN1 30.00 = 1094.68.
    sales = client.get(
        "/c/insight/invoices.csv?" + links["the invoices issued in the period"].split("?", 1)[1]
    ).get_data(as_text=True)
    issued = list(csv.DictReader(io.StringIO(sales)))
    total = sum((Decimal(r["Total"]) for r in issued if r["Currency"] == "USD"), Decimal(0))
    assert sorted(r["Invoice"] for r in issued) == sorted(
        f"INV-{n}" for n in ("A3", "O1", "O2", "E2", "E3", "D1", "D3", "F1", "F2", "F3")
    )
    # A3 100 + O1 200 + O2 300 + D1 80 + D3 60 + F1 100 + F2 100 + F3 40 = 980.00 (V1 voided)
    assert total == Decimal("980.00")  # + E2 133.84 + E3 10.84 - CN1 30.00 = 1094.68
    assert kpi.credit_sales == total + Decimal("133.84") + Decimal("10.84") - Decimal("30.00")


def test_each_forecast_weeks_list_adds_up_to_the_dashboards_figure_on_the_demo_ledger(
    owner_client, rt, demo_company
):
    """The demo ledger's forecast (partial payments, foreign currencies, a 100 invoices): every
    week's list, all its rows (the CSV) and the total it shows, is the dashboard's figure."""
    assert owner_client.get("/c/demo/").status_code == 200  # computes today's insight
    found = 0
    for which in (*(str(i) for i in range(1, 14)), "later"):
        page = parse(owner_client.get(f"/c/demo/invoices?expected={which}").data)
        figure = page.by_id("expected-figure").text
        assert page.by_id("expected-total").text == figure, which
        rows = list(
            csv.reader(
                io.StringIO(
                    owner_client.get(f"/c/demo/invoices.csv?expected={which}").get_data(
                        as_text=True
                    )
                )
            )
        )[1:]
        found += len(rows)
        assert f"${sum((Decimal(r[-1]) for r in rows), Decimal(0)):,.2f}" == figure, which
    assert found > 20
