"""The call list after a payment, in a real browser (Debian's chromium through Playwright): the
owner sees a call to make; the customer pays everything through their statement link; the
owner's call list no longer shows them, and the navigation stops counting the call. Then the
owner logs a promise from a call. Screenshots: /tmp/arbridge-calls-*.png."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from arbridge.sync.db import transaction
from arbridge.sync.model import CallTask, Customer, InvoiceHold
from arbridge.sync.store import company_today, issue_statement_token
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)
from tests.web.test_calls import _customer_with_two_overdue, _task
from tests.web.test_owner_pages_browser import _signed_in

pytestmark = pytest.mark.browser
SHOTS = Path("/tmp")


def test_the_call_list_after_a_payment_drops_the_customer_who_paid(chromium, live, demo_company):  # noqa: F811
    rt = live.rt
    paying = _customer_with_two_overdue(rt, demo_company)
    with transaction(rt.sessions) as s:
        for t in s.scalars(select(CallTask)):
            t.done_at = rt.clock.now()
    paying_task = _task(rt, demo_company, paying, key="paying")
    others = _customer_with_two_overdue(rt, demo_company, but=paying[0].customer_id)
    other_task = _task(rt, demo_company, others, key="other")
    with transaction(rt.sessions) as s:
        statement = issue_statement_token(s, rt.clock, s.get(Customer, paying[0].customer_id))
    context, page, errors = _signed_in(chromium, live, 390)
    customer = chromium.new_page(viewport={"width": 390, "height": 900})
    try:
        page.goto(f"{live.base_url}/c/demo/calls")
        assert page.locator(f'li.call[data-task="{paying_task}"]').count() == 1
        assert page.locator("#nav-calls").inner_text().startswith("2")
        page.screenshot(path=str(SHOTS / "arbridge-calls-before.png"), full_page=True)
        # The customer pays everything they owe through the statement link.
        customer.goto(f"{live.base_url}/pay/{statement}")
        customer.click("#pay")
        customer.wait_for_url("**/simulated-checkout/**")
        customer.click("#sim-pay")
        customer.wait_for_url(f"**/pay/{statement}**")
        customer.wait_for_load_state()
        assert "Paid" in customer.locator("#state").inner_text()
        # At once: the owner's list no longer has them, the other call stays.
        page.reload()
        page.wait_for_load_state()
        assert page.locator(f'li.call[data-task="{paying_task}"]').count() == 0
        assert page.locator(f'li.call[data-task="{other_task}"]').count() == 1
        assert page.locator("#nav-calls").inner_text().startswith("1")
        # The owner calls the other customer, who promises to pay in a week.
        promised = company_today(demo_company, rt.clock) + timedelta(days=7)
        row = page.locator(f'li.call[data-task="{other_task}"]')
        row.get_by_label("Promised to pay by the date below").check()
        row.locator("input[type=date]").fill(promised.isoformat())
        row.locator("textarea").fill("Cheque on Friday")
        row.get_by_role("button", name="Log the call").click()
        page.wait_for_url("**/calls#calls")
        page.wait_for_load_state()
        assert "Call logged: promised to pay by" in page.locator(".flash.ok").inner_text()
        assert page.locator("li.call").count() == 0
        assert page.locator("#nav-calls").count() == 0
        assert "logged from a call" in page.locator("#holds").inner_text()
        page.screenshot(path=str(SHOTS / "arbridge-calls-after.png"), full_page=True)
    finally:
        customer.close()
        context.close()
    with rt.sessions() as s:
        holds = s.scalars(select(InvoiceHold)).all()
    assert {(h.invoice_id, h.promised_on) for h in holds} == {(i.id, promised) for i in others}
    assert errors == []


def test_a_voicemail_keeps_the_call_on_the_list_with_the_attempt_shown(
    chromium,  # noqa: F811
    live,  # noqa: F811
    demo_company,
):
    rt = live.rt
    invoices = _customer_with_two_overdue(rt, demo_company)
    with transaction(rt.sessions) as s:
        for t in s.scalars(select(CallTask)):
            t.done_at = rt.clock.now()
    task = _task(rt, demo_company, invoices, key="voicemail")
    for width in (390, 1366):
        context, page, errors = _signed_in(chromium, live, width)
        try:
            page.goto(f"{live.base_url}/c/demo/calls")
            row = page.locator(f'li.call[data-task="{task}"]')
            row.get_by_label("Left a voicemail").check()
            row.get_by_role("button", name="Log the call").click()
            page.wait_for_url("**/calls#calls")
            page.wait_for_load_state()
            assert "try again" in page.locator(".flash.ok").inner_text()
            row = page.locator(f'li.call[data-task="{task}"]')
            assert row.count() == 1
            attempts = row.locator(".call-attempts").inner_text()
            assert "left a voicemail" in attempts
            assert ("1 attempt so far" if width == 390 else "2 attempts so far") in attempts
            assert page.locator("#nav-calls").inner_text().startswith("1")
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(
                path=str(SHOTS / f"arbridge-calls-voicemail-{width}.png"), full_page=True
            )
        finally:
            context.close()
        assert errors == []
