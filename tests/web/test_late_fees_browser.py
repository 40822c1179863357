"""The owner sets late fees, sees a charge on an invoice and waives it, in a real browser.
A screenshot goes to /tmp/arbridge-late-fees.png for a human to look at."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbridge.services.fees.assess import assess_late_fees
from tests.web.conftest import fresh_company, new_sign_in_token
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

SHOT = Path("/tmp/arbridge-late-fees.png")


def test_owner_sets_late_fees_and_waives_a_charge(chromium, live, demo_company):  # noqa: F811
    company = fresh_company(live.rt, demo_company.slug)
    page = chromium.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    token = new_sign_in_token(live.rt, company)
    page.goto(f"{live.base_url}/sign-in/{token}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live.base_url}/c/demo/")

    page.goto(f"{live.base_url}/c/demo/settings#late_fees")
    section = page.locator("section#late_fees")
    section.get_by_label("Charge late fees and interest on overdue invoices").check()
    section.get_by_label("Grace period (days past due)").fill("30")
    section.get_by_label("Late fee", exact=True).fill("25.00")
    section.get_by_label("Interest (% a year, simple, charged monthly)").fill("12")
    section.get_by_role("button", name="Save").click()
    page.wait_for_url(f"{live.base_url}/c/demo/settings#late_fees")
    words = page.locator("#late-fees-words").inner_text()
    assert "A late fee of $25.00 is charged once more than 30 days after the due date" in words

    run = assess_late_fees(live.rt, fresh_company(live.rt, "demo"))
    fee = next(a for a in run.charged if a.kind == "fee")
    page.goto(f"{live.base_url}/c/demo/invoices/{fee.invoice_id}")
    row = page.locator("#invoice-late-fees tbody tr", has_text=fee.description)
    assert "$25.00" in row.inner_text()
    page.screenshot(path=str(SHOT), full_page=True)
    row.get_by_role("button", name="Waive").click()
    page.wait_for_url(f"{live.base_url}/c/demo/invoices/{fee.invoice_id}")
    assert (
        "waived"
        in page.locator("#invoice-late-fees tbody tr", has_text=fee.description).inner_text()
    )
    assert problems == []
