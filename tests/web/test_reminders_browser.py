"""In a real browser: the customer promises to pay from the pay page, and unsubscribes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from arbridge.services.reminders.unsubscribe import unsubscribe_token
from arbridge.sync.db import transaction
from arbridge.sync.model import Contact, InvoiceHold
from arbridge.sync.store import issue_pay_token, open_invoices
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def test_customer_promises_to_pay_then_unsubscribes(chromium, live, demo_company):  # noqa: F811
    rt = live.rt
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        token = issue_pay_token(s, rt.clock, inv)
        invoice_id = inv.id
        contact = s.scalars(select(Contact).where(Contact.customer_id == inv.customer_id)).first()
        contact_id, email = contact.id, contact.email
    context = chromium.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{live.base_url}/pay/{token}")
        page.get_by_text("I will pay on a date").click()
        page.locator("#promised_on").fill("2026-12-04")
        page.locator("#promise-form").get_by_role("button", name="Send").click()
        page.locator("#hold-promise").wait_for()
        assert "Dec 4, 2026" in page.locator("#hold-promise").inner_text()
        page.screenshot(path="/tmp/arbridge-promise.png", full_page=True)

        page.goto(f"{live.base_url}/u/{unsubscribe_token(rt.settings.secret_key, contact_id)}")
        assert email in page.locator("main").inner_text()
        page.get_by_role("button", name="Unsubscribe").click()
        page.locator("#state").wait_for()
        assert "no longer get payment reminders" in page.locator("#state").inner_text()
    finally:
        context.close()
    assert problems == [], problems
    with rt.sessions() as s:
        hold = s.scalars(select(InvoiceHold)).one()
        assert (hold.invoice_id, hold.kind) == (invoice_id, "promise")
        assert s.get(Contact, contact_id).opted_out_at is not None
