"""A customer takes an installment plan on the pay page in a real browser (Debian's chromium
through Playwright): choose the count and frequency, read the schedule and the terms, agree,
pay the first installment in the simulated checkout; then the owner sees the plan, and the
clock moving charges the next installment. Screenshots: /tmp/arbridge-plan-*.png."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from arbridge.sync.db import transaction
from arbridge.sync.model import Invoice, Plan
from arbridge.sync.store import issue_pay_token, open_invoices
from arbridge.worker import drain
from tests.web.conftest import new_sign_in_token
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser
SHOTS = Path("/tmp")


def test_a_plan_taken_on_the_pay_page_charges_on_schedule(chromium, live, demo_company):  # noqa: F811
    rt = live.rt
    with transaction(rt.sessions) as s:
        inv = next(
            i
            for i in open_invoices(s, demo_company.id)
            if i.currency == "USD" and i.open_balance_minor >= 20000 and not i.payment_pending
        )
        token = issue_pay_token(s, rt.clock, s.get(Invoice, inv.id))
        owed = inv.open_balance_minor
    page = chromium.new_page(viewport={"width": 1100, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live.base_url}/pay/{token}")
    page.click("#pay-in-installments")
    page.select_option("#installments", "3")
    page.select_option("#every", "fortnight")
    from playwright.sync_api import expect

    page.click("#show-schedule")
    # The click starts a navigation; wait for the new page before counting its rows.
    page.wait_for_url("**/plan?installments=3&every=fortnight")
    page.wait_for_load_state()
    rows = page.locator("#plan-schedule tbody tr")
    expect(rows).to_have_count(3)
    assert "cents left over" in page.inner_text("#remainder-rule")
    page.screenshot(path=str(SHOTS / "arbridge-plan-schedule.png"), full_page=True)
    # The box must be ticked: the browser will not send the form without it.
    page.click("#agree-and-pay")
    assert "/simulated-checkout/" not in page.url
    page.check("#agree")
    page.click("#agree-and-pay")
    page.wait_for_url("**/simulated-checkout/**")
    page.select_option("#saved-card", "succeeds")
    page.click("#sim-pay")
    page.wait_for_url("**/plan")
    assert "your plan is set up" in page.inner_text("body")
    page.screenshot(path=str(SHOTS / "arbridge-plan-running.png"), full_page=True)
    drain(rt)
    with rt.sessions() as s:
        plan = s.scalars(select(Plan)).one()
        assert plan.status == "current" and plan.accepted_at is not None
        assert [i.status for i in plan.installments] == ["paid", "scheduled", "scheduled"]
        assert sum(i.amount_minor for i in plan.installments) == owed
        plan_id = plan.id
    # Two weeks on, the second installment is charged without the customer.
    rt.clock.advance(timedelta(days=14))
    for _ in range(3):
        drain(rt)
    page.reload()
    statuses = page.locator("#plan-installments tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.status)"
    )
    assert statuses == ["paid", "paid", "scheduled"]
    # The owner sees it on the plans page.
    owner = chromium.new_page(viewport={"width": 1200, "height": 1000})
    owner.goto(f"{live.base_url}/sign-in/{new_sign_in_token(rt, demo_company)}")
    owner.click("form button[type=submit]")
    owner.wait_for_url(f"**/c/{demo_company.slug}**")
    owner.goto(f"{live.base_url}/c/{demo_company.slug}/plans/{plan_id}")
    assert owner.get_attribute("#plan-status", "data-status") == "current"
    owner.screenshot(path=str(SHOTS / "arbridge-plan-owner.png"), full_page=True)
    assert errors == []


def test_the_plan_rule_form_returns_to_the_page_it_was_sent_from(owner_client, rt, demo_company):
    from arbridge.sync.model import CustomerReminderSettings
    from tests.web.conftest import csrf_token

    with rt.sessions() as s:
        inv = open_invoices(s, demo_company.id)[0]
    page = owner_client.get(f"/c/demo/invoices/{inv.id}")
    assert b'id="plan-choice-form"' in page.data
    back = owner_client.post(
        f"/c/demo/customers/{inv.customer_id}/plan-choice",
        data={
            "csrf_token": csrf_token(page.data),
            "choice": "deny",
            "next": f"/c/demo/invoices/{inv.id}",
        },
    )
    assert back.status_code == 303
    assert back.headers["Location"].endswith(f"/c/demo/invoices/{inv.id}")
    with rt.sessions() as s:
        pref = s.scalar(
            select(CustomerReminderSettings).where(
                CustomerReminderSettings.customer_id == inv.customer_id
            )
        )
        assert pref.plan_choice == "deny"
    evil = owner_client.post(
        f"/c/demo/customers/{inv.customer_id}/plan-choice",
        data={"csrf_token": csrf_token(page.data), "choice": "", "next": "//evil.example/x"},
    )
    assert evil.headers["Location"].endswith("/c/demo/plans")
