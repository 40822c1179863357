"""The owner's whole path in a real browser: sign in, read the dashboard, send a payment link.

Drives Debian's chromium through Playwright against the app served by waitress on a free port.
Screenshots go to /tmp/arbridge-dashboard.png and /tmp/arbridge-pay.png for a human to look at.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from waitress import create_server

from arbridge.runtime import Runtime
from arbridge.sync.model import Invoice
from arbridge.sync.store import aging_report, company_today, report_dict
from arbridge.web import create_app
from tests.web.conftest import fresh_company, new_sign_in_token

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DASHBOARD_PNG = Path("/tmp/arbridge-dashboard.png")
PAY_PNG = Path("/tmp/arbridge-pay.png")


def _unavailable(reason: str) -> None:
    """Skip on a developer machine without a browser; in CI a missing browser is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; the browser test must run in CI (CI is set), so it may not skip")
    pytest.skip(reason)


@pytest.fixture
def chromium():
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Live:
    base_url: str
    rt: Runtime


@pytest.fixture
def live(settings, clock, demo_company) -> Iterator[Live]:
    """The app served by waitress on a free port, its base_url the real address of the server."""
    wsgi: dict[str, object] = {}

    def dispatch(environ, start_response):
        return wsgi["app"](environ, start_response)

    # Bind first (port 0: the OS picks a free port, no race), then build the app for that URL.
    server = create_server(dispatch, host="127.0.0.1", port=0, threads=4)
    base_url = f"http://127.0.0.1:{server.effective_port}"
    rt = Runtime.open(settings.with_(base_url=base_url), clock)
    wsgi["app"] = create_app(rt)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield Live(base_url, rt)
    finally:
        # Close the listener and every connection the browser left open from inside the
        # server's own loop (its trigger runs the thunk there), so the loop ends with an empty
        # map. Closing them from this thread raced the loop's select(): EBADF in its thread.
        def close_all() -> None:
            for channel in list(server._map.values()):
                channel.close()

        server.trigger.pull_trigger(close_all)
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()
        rt.close()
        assert not thread.is_alive(), "the waitress thread did not stop"


def test_owner_signs_in_and_sends_a_payment_link(chromium, live, demo_company):
    company = fresh_company(live.rt, demo_company.slug)
    with live.rt.sessions() as s:
        aging = aging_report(s, company, company_today(company, live.rt.clock))
    report = report_dict(company, aging)
    assert report["open_balance"] == str(aging.open_balance.amount)
    expected_open = aging.open_balance.format()
    expected_overdue = aging.overdue_balance.format()

    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []

    def on_console(message) -> None:
        if message.type == "error":
            problems.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )

    try:
        # Sign in: the link shows a button; pressing it signs in and lands on the dashboard.
        token = new_sign_in_token(live.rt, company)
        page.goto(f"{live.base_url}/sign-in/{token}")
        assert page.locator("h1").inner_text() == "Sign in"
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live.base_url}/c/demo/")

        assert page.locator("#open-balance").inner_text() == expected_open
        assert page.locator("#overdue-balance").inner_text() == expected_overdue
        rows = page.locator("table#invoices tbody tr")
        assert rows.count() == min(report["open_invoices"], 100)  # the first page
        # The stylesheet loaded and applies (the CSP allows 'self'): KPI values are 28px, not 16px.
        assert page.locator("#open-balance").evaluate("e => getComputedStyle(e).fontSize") == "28px"
        page.screenshot(path=str(DASHBOARD_PNG))  # the first screen: KPIs and aging

        # An overdue invoice, from the 31-60 days bucket: pick the bucket in the aging table.
        page.locator('table#aging tr[data-bucket="31_60"] a').click()
        page.wait_for_url(f"{live.base_url}/c/demo/?bucket=31_60")
        overdue = page.locator('table#invoices tbody tr[data-bucket="31_60"]').first
        number = overdue.locator("td").first.inner_text()
        overdue.locator("a").first.click()
        page.wait_for_url(f"{live.base_url}/c/demo/invoices/*")
        invoice_id = int(page.url.rsplit("/", 1)[1])
        with live.rt.sessions() as s:
            inv = s.get(Invoice, invoice_id)
            assert inv is not None and inv.company_id == company.id
            assert inv.number == number
            balance = inv.balance.format()
        assert page.locator("h1").inner_text() == f"Invoice {number}"

        page.get_by_role("button", name="Create payment link").click()
        link = page.locator("#pay-link")
        link.wait_for()
        href = link.get_attribute("href")
        assert href is not None and href.startswith(f"{live.base_url}/pay/")

        link.click()
        page.wait_for_url(f"{live.base_url}/pay/*")
        assert page.url == href
        assert page.locator("#amount-due").inner_text() == balance
        assert company.name in page.locator("header").inner_text()
        assert page.locator("h1").inner_text() == f"Invoice {number}"
        page.screenshot(path=str(PAY_PNG), full_page=True)
    finally:
        context.close()

    assert problems == [], problems
    assert DASHBOARD_PNG.stat().st_size > 5_000
    assert PAY_PNG.stat().st_size > 5_000


def test_customer_pays_through_the_simulated_checkout(chromium, live, demo_company):
    from arbridge.sync.db import transaction
    from arbridge.sync.store import issue_pay_token, ledger_connection, open_invoices
    from arbridge.worker import drain

    rt = live.rt
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        token = issue_pay_token(s, rt.clock, inv)
        invoice_id, number, balance = inv.id, inv.number, inv.balance.format()
        before = aging_report(
            s, fresh_company(rt, "demo"), company_today(fresh_company(rt, "demo"), rt.clock)
        )
    context = chromium.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{live.base_url}/pay/{token}")
        assert page.locator("#amount-due").inner_text() == balance
        page.locator("#pay").click()
        page.wait_for_url(f"{live.base_url}/simulated-checkout/*")
        assert "simulated checkout" in page.locator("main").inner_text().lower()
        assert page.locator("#sim-amount").inner_text() == balance
        page.screenshot(path="/tmp/arbridge-simulated-checkout.png")
        # A declined card first: Checkout stays open and says so.
        page.locator("input[value=fail]").check()
        page.locator("#sim-pay").click()
        assert "declined" in page.locator("#sim-error").inner_text()
        page.locator("input[value=succeed]").check()
        page.locator("#sim-pay").click()
        page.wait_for_url(f"{live.base_url}/pay/{token}")
        assert "Thank you" in page.locator("main").inner_text()
        assert page.locator("#state").inner_text() == "Paid in full. Thank you!"
        page.screenshot(path="/tmp/arbridge-paid.png")
    finally:
        context.close()
    assert problems == [], problems
    with rt.sessions() as s:
        assert s.get(Invoice, invoice_id).status == "paid"
        company = fresh_company(rt, "demo")
        after = aging_report(s, company, company_today(company, rt.clock))
        conn = ledger_connection(s, demo_company.id)
    assert after.open_invoices == before.open_invoices - 1
    drain(rt)  # the worker: the webhook (already applied by the return) and the ledger write-back
    ledger = rt.demo_ledger(conn.tenant_id)
    paid = [
        p for p in ledger.read()["Payment"] if str(p.get("reference", "")).startswith("pi_sim_")
    ]
    assert len(paid) == 1 and number
