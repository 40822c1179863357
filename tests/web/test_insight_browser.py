"""The dashboard's charts and the customers and cash page in a real browser, on the demo ledger:
the charts are drawn from the tables beside them (Chart.js from our static files, no inline
script under the CSP), the numbers agree with `arbridge report`, and without JavaScript the
tables are still there. Screenshots: /tmp/arbridge-insight-dashboard.png, /tmp/arbridge-charts.png and
/tmp/arbridge-insight.png.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from arbridge.sync.insight_store import insight, insight_dict, trends_list
from arbridge.sync.store import company_today, kpi_report
from arbridge.sync.trends_store import kpi_trends
from tests.web.conftest import fresh_company, new_sign_in_token
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

CHARTS_PNG = Path("/tmp/arbridge-charts.png")
INSIGHT_PNG = Path("/tmp/arbridge-insight.png")
TOP_PNG = Path("/tmp/arbridge-insight-dashboard.png")


def _report(rt, company):
    with rt.sessions() as s:
        today = company_today(company, rt.clock)
        kpi = kpi_report(s, company, today, 90)
        return insight_dict(insight(s, company, today, kpi)), trends_list(
            kpi_trends(s, company, today)
        )


def _sign_in(page, server, company) -> None:
    page.goto(f"{server.base_url}/sign-in/{new_sign_in_token(server.rt, company)}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.base_url}/c/demo/")


def test_dashboard_charts_agree_with_the_report(chromium, live, demo_company):  # noqa: F811
    company = fresh_company(live.rt, demo_company.slug)
    data, trends = _report(live.rt, company)
    context = chromium.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    try:
        _sign_in(page, live, company)
        page.wait_for_selector("figure.charted#chart-forecast")
        assert page.locator("#insight h2").inner_text() == "Customers and cash"
        page.screenshot(path=str(TOP_PNG))  # the first screen: balances, then the insight card
        for figure in ("chart-aging", "chart-trends", "chart-forecast"):
            box = page.locator(f"#{figure} canvas").bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 80, figure
            assert page.locator(f"#{figure} details.how summary").inner_text() == (
                "How is this computed?"
            )
        weeks = page.locator("#chart-forecast tbody td[data-value]").evaluate_all(
            "cells => cells.map(c => c.getAttribute('data-value'))"
        )
        assert weeks == [w["amount"] for w in data["forecast"]["weeks"]]
        dso = page.locator("#chart-trends tbody tr").evaluate_all(
            "rows => rows.map(r => r.querySelectorAll('td')[1].getAttribute('data-value'))"
        )
        assert dso == [m["dso"] or "" for m in trends]
        # The aging bar's slices add up to the open balance shown above it.
        slices = page.locator("#chart-aging td[data-value]").evaluate_all(
            "cells => cells.map(c => c.getAttribute('data-value'))"
        )
        open_balance = page.locator("#open-balance").inner_text()
        assert f"${sum(map(Decimal, slices)):,}" == open_balance
        page.locator("#charts").scroll_into_view_if_needed()
        page.locator("#charts").screenshot(path=str(CHARTS_PNG))

        page.goto(f"{live.base_url}/c/demo/insight")
        assert page.locator("h1").inner_text() == "Customers and cash"
        flagged = page.locator("#flags tbody tr").count()
        assert flagged == len(data["flags"])
        page.screenshot(path=str(INSIGHT_PNG), full_page=True)
    finally:
        context.close()
    assert problems == [], problems
    assert CHARTS_PNG.stat().st_size > 5_000


def test_without_javascript_the_figures_are_tables(chromium, live, demo_company):  # noqa: F811
    company = fresh_company(live.rt, demo_company.slug)
    context = chromium.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{live.base_url}/sign-in/{new_sign_in_token(live.rt, company)}")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live.base_url}/c/demo/")
        assert page.locator("figure canvas").count() == 0
        assert page.locator("#chart-forecast tbody tr").count() == 13
        assert page.locator("#chart-trends tbody tr").count() == 12
    finally:
        context.close()


WEEK_PNG = Path("/tmp/arbridge-forecast-week.png")


def test_the_dashboards_kpis_agree_with_the_report_and_a_forecast_week_opens_its_invoices(
    chromium,  # noqa: F811
    live,  # noqa: F811
    demo_company,
):
    company = fresh_company(live.rt, demo_company.slug)
    data, _ = _report(live.rt, company)
    with live.rt.sessions() as s:
        kpi = kpi_report(s, company, company_today(company, live.rt.clock), 90).rounded()
    context = chromium.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        _sign_in(page, live, company)
        for key, value in kpi.items():
            assert page.locator(f"#kpi-{key}").inner_text() == (value or "n/a"), key
        figures = [w["amount"] for w in data["forecast"]["weeks"]]
        # The week with the most invoices after the first: click it, as the owner would.
        week = max(range(1, 13), key=lambda i: Decimal(figures[i])) + 1
        page.locator("#chart-forecast summary").first.click()  # "The numbers"
        page.locator(f"#chart-forecast a[data-week='{week}']").click()
        page.wait_for_selector("#expected-total")
        assert page.locator("#expected-total").inner_text() == f"${Decimal(figures[week - 1]):,}"
        amounts = page.locator("td.expected").evaluate_all(
            "cells => cells.map(c => c.getAttribute('data-value'))"
        )
        assert amounts and sum(map(Decimal, amounts)) == Decimal(figures[week - 1])
        page.screenshot(path=str(WEEK_PNG), full_page=True)
    finally:
        context.close()
