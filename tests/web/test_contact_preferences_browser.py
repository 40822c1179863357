"""The customer page's contacts in a real browser (Debian's chromium through Playwright): the
owner sets a contact to prefer texts and gives them their own timezone; the page then says the
reminders go by text (or by email, and why) in that zone, named. And the onboarding choice of a
ledger with many old overdue invoices, paged. Each at 390 px and 1366 px, never wider than the
window, with no serious or critical axe violation. Screenshots: /tmp/arbridge-owner-gaps-*.png."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from arbridge.sync.db import transaction
from arbridge.sync.model import Contact
from tests.web.conftest import new_sign_in_token
from tests.web.test_a11y_browser import _axe, _browser
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)
from tests.web.test_reminders_start_paging import _ledger

pytestmark = pytest.mark.browser
SHOTS = Path("/tmp")


def _sign_in(page, live, company) -> None:  # noqa: F811
    page.goto(f"{live.base_url}/sign-in/{new_sign_in_token(live.rt, company)}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live.base_url}/c/{company.slug}/")


@pytest.mark.parametrize("width", [390, 1366])
def test_the_owner_sets_a_contact_to_prefer_texts_in_their_own_timezone(
    chromium,  # noqa: F811
    live,  # noqa: F811
    demo_company,
    width,
):
    rt = live.rt
    with transaction(rt.sessions) as s:
        contact = s.scalars(
            select(Contact).where(Contact.company_id == demo_company.id).order_by(Contact.id)
        ).first()
        contact.is_primary = True
        contact.phone, contact.phone_e164, contact.phone_problem = "+1 312 555 0142", None, None
        contact.sms_consent_at = None
        cust_id, contact_id = contact.customer_id, contact.id
    with _browser(chromium, width) as visit:
        page = visit.page
        _sign_in(page, live, demo_company)
        page.goto(f"{live.base_url}/c/demo/customers/{cust_id}")
        form = page.locator(f'form.contact[data-contact="{contact_id}"]')
        form.get_by_label("Prefers").select_option("sms")
        form.get_by_label("Timezone").select_option("America/Los_Angeles")
        form.get_by_role("button", name="Save contact").click()
        page.wait_for_load_state()
        assert "Contact saved." in page.locator(".flash.ok").inner_text()
        route = page.locator("#reminder-route").inner_text()
        assert "by email" in route and "prefers texts" in route and "no recorded consent" in route
        assert "America/Los_Angeles" in route and "PST" in route
        # Consent recorded: the reminders go by text now.
        page.get_by_label("How they agreed to texts").first.fill("Signed the order form")
        page.get_by_role("button", name="Record consent to text").first.click()
        page.wait_for_load_state()
        route = page.locator("#reminder-route").inner_text()
        assert "by text message to +13125550142" in route
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll <= inner
        page.locator("#contacts").screenshot(
            path=str(SHOTS / f"arbridge-owner-gaps-contact-{width}.png")
        )
        assert _axe(page) == []
        assert visit.errors == []


@pytest.mark.parametrize("width", [390, 1366])
def test_the_onboarding_choice_pages_a_ledger_of_old_overdue_invoices(
    chromium,  # noqa: F811
    live,  # noqa: F811
    width,
):
    books = _ledger(live.rt, f"old{width}", 120)
    with _browser(chromium, width) as visit:
        page = visit.page
        _sign_in(page, live, books.company)
        page.goto(f"{live.base_url}/c/{books.company.slug}/reminders/start")
        page.get_by_role("button", name="Show tomorrow's reminders").click()
        page.wait_for_load_state()
        assert page.locator("#plan tbody tr").count() == 50
        assert "120 messages about 240 invoices" in page.locator("#plan-totals").inner_text()
        page.locator("#plan-pager a[rel=next]").click()
        page.wait_for_load_state()
        assert "Page 2 of 3" in page.locator("#plan-pager").inner_text()
        assert page.locator("#start-confirm button").count() == 1
        scroll, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll <= inner
        page.screenshot(path=str(SHOTS / f"arbridge-owner-gaps-start-{width}.png"), full_page=True)
        assert _axe(page) == []
        assert visit.errors == []
