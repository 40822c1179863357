"""The owner's pages in a real browser (Debian's chromium through Playwright): the navigation,
the customers list and page, the invoices list with search, filters and bulk pause, and the
payments page; every page at 390 px (a phone) and 1366 px wide and never wider than the window.
Screenshots: /tmp/arbridge-owner-*.png, to be looked at."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.conftest import fresh_company, new_sign_in_token
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)
from tests.web.test_owner_pages import _payments

pytestmark = pytest.mark.browser
SHOTS = Path("/tmp")
PAGES = {
    "dashboard": "/c/demo/",
    "invoices": "/c/demo/invoices",
    "invoices-all": "/c/demo/invoices?status=all&sort=balance&dir=desc",
    "customers": "/c/demo/customers",
    "customers-sorted": "/c/demo/customers?sort=balance&dir=desc",
    "payments": "/c/demo/payments",
    "plans": "/c/demo/plans",
    "reminders": "/c/demo/reminders",
    "calls": "/c/demo/calls",
    "settings": "/c/demo/settings",
}


def _signed_in(chromium, live, width: int):  # noqa: F811
    context = chromium.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    company = fresh_company(live.rt, "demo")
    page.goto(f"{live.base_url}/sign-in/{new_sign_in_token(live.rt, company)}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live.base_url}/c/demo/")
    return context, page, errors


def _width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def tall_captions(page) -> list[str]:
    """Table captions taller than three lines: on a phone the stacked tables left a caption as
    narrow as its widest letter, one letter a line."""
    return page.evaluate(
        "[...document.querySelectorAll('caption')]"
        ".filter(c => c.getBoundingClientRect().height > 80).map(c => c.textContent.trim())"
    )


@pytest.mark.parametrize("width", [390, 1366])
def test_every_owner_page_fits_the_window(chromium, live, demo_company, width):  # noqa: F811
    _payments(live.rt, demo_company.id, 3)  # rows for the payments page (ledger states too)
    context, page, errors = _signed_in(chromium, live, width)
    try:
        for name, path in PAGES.items():
            page.goto(f"{live.base_url}{path}")
            page.locator("#main-nav").wait_for()
            assert _width(page) <= width, (name, width, _width(page))
            assert tall_captions(page) == [], (name, width)
            if name == "customers-sorted":  # and the customer's own page
                page.locator("#customers tbody tr a").first.click()
                page.wait_for_url(f"{live.base_url}/c/demo/customers/*")
                assert _width(page) <= width, ("customer", width, _width(page))
                page.screenshot(path=str(SHOTS / f"arbridge-owner-customer-{width}.png"))
            if width == 390 or name in ("customers", "invoices", "payments"):
                page.screenshot(path=str(SHOTS / f"arbridge-owner-{name}-{width}.png"))
        # The navigation takes the owner to each section and marks where they are.
        page.goto(f"{live.base_url}/c/demo/")
        page.locator('#main-nav a[data-section="calls"]').click()
        page.wait_for_url(f"{live.base_url}/c/demo/calls")
        current = page.locator('#main-nav a[aria-current="page"]')
        assert current.get_attribute("data-section") == "calls"
    finally:
        context.close()
    assert errors == []


def test_the_owner_finds_a_customer_and_marks_them_do_not_chase(chromium, live, demo_company):  # noqa: F811
    context, page, errors = _signed_in(chromium, live, 1366)
    try:
        page.locator('#main-nav a[data-section="customers"]').click()
        page.wait_for_url(f"{live.base_url}/c/demo/customers")
        page.fill("#q", "copper")
        page.get_by_role("button", name="Search").click()
        page.wait_for_url("**/customers?q=copper*")
        names = page.locator("#customers tbody tr td:first-child a").all_inner_texts()
        assert names and all("copper" in n.lower() for n in names)
        page.locator('th a[data-sort="balance"]').click()
        page.wait_for_url("**sort=balance*")
        page.locator("#customers tbody tr a").first.click()
        page.wait_for_url(f"{live.base_url}/c/demo/customers/*")
        page.locator("#do-not-chase").click()
        page.wait_for_url("**#chasing")
        assert "do not chase" in page.locator("#customer-flags").inner_text()
        assert page.locator("#do-not-chase").inner_text() == "Chase again"
        page.screenshot(path=str(SHOTS / "arbridge-owner-customer-flags.png"), full_page=True)
    finally:
        context.close()
    assert errors == []


def test_the_owner_filters_invoices_and_pauses_two_at_once(chromium, live, demo_company):  # noqa: F811
    context, page, errors = _signed_in(chromium, live, 1366)
    try:
        page.locator('#main-nav a[data-section="invoices"]').click()
        page.wait_for_url(f"{live.base_url}/c/demo/invoices")
        page.select_option("#bucket", "31_60")
        page.select_option("#currency", "USD")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**bucket=31_60*")
        rows = page.locator("#invoices tbody tr")
        assert rows.count() > 2
        buckets = {rows.nth(i).get_attribute("data-bucket") for i in range(rows.count())}
        assert buckets == {"31_60"}
        first, second = rows.nth(0), rows.nth(1)
        picked = {first.get_attribute("data-invoice"), second.get_attribute("data-invoice")}
        first.locator("input[type=checkbox]").check()
        second.locator("input[type=checkbox]").check()
        page.locator("#bulk-pause").click()
        page.wait_for_selector(".flash.ok")
        assert "paused for 2 invoices" in page.locator(".flash.ok").inner_text()
        assert "bucket=31_60" in page.url  # back on the same filtered list
        page.select_option("#hold", "paused")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**hold=paused*")
        shown = page.locator("#invoices tbody tr")
        assert {shown.nth(i).get_attribute("data-invoice") for i in range(shown.count())} == picked
        page.screenshot(path=str(SHOTS / "arbridge-owner-invoices-paused.png"), full_page=True)
        # Search by a number from the list.
        page.fill("#q", shown.nth(0).locator("td.number").inner_text())
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**q=*")
        assert page.locator("#invoices tbody tr").count() == 1
    finally:
        context.close()
    assert errors == []
