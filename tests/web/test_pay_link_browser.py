"""The invoice page's payment link in a real browser: created by a click, still there after a
reload, copied (or, where the clipboard is refused, selected) by its Copy button, inside a
390 px window, and clean under axe. Screenshot: /tmp/arbridge-pay-link-390.png."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from arbridge.sync.store import open_invoices
from tests.web.conftest import fresh_company, new_sign_in_token
from tests.web.test_a11y_browser import _axe, _width
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser
SHOT = Path("/tmp/arbridge-pay-link-390.png")


def _sign_in(chromium, live, demo_company, **options):  # noqa: F811
    """A 390 px window signed in as the owner, and the invoice page's URL to try."""
    company = fresh_company(live.rt, demo_company.slug)
    with live.rt.sessions() as s:
        inv = next(i for i in open_invoices(s, company.id) if i.currency == "USD")
    context = chromium.new_context(viewport={"width": 390, "height": 900}, **options)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{live.base_url}/sign-in/{new_sign_in_token(live.rt, company)}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live.base_url}/c/demo/")
    return context, page, f"{live.base_url}/c/demo/invoices/{inv.id}"


def test_the_link_survives_a_reload_and_its_copy_button_works(
    chromium,  # noqa: F811
    live,  # noqa: F811
    demo_company,
):
    context, page, invoice_url = _sign_in(chromium, live, demo_company)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(invoice_url)
        assert page.locator("#pay-link").count() == 0

        page.get_by_role("button", name="Create payment link").click()
        page.wait_for_url(f"{invoice_url}#payment-link")
        link = page.locator("#pay-link").inner_text()
        assert link.startswith(f"{live.base_url}/pay/")
        page.reload()
        assert page.locator("#pay-link").inner_text() == link
        assert page.locator("#pay-link").get_attribute("href") == link

        # The long link wraps inside the phone's window.
        scroll, inner = _width(page)
        assert scroll <= inner == 390
        box = page.locator("#pay-link").bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390

        copy = page.locator("#copy-pay-link")
        assert copy.is_visible() and copy.inner_text() == "Copy"
        copy.click()
        # Polled from here: a page function would be evaluated in the page, which its CSP forbids.
        expect(copy).to_have_text(re.compile(r"^(Copied|Selected)$"))
        said = copy.inner_text()
        assert said in ("Copied", "Selected"), said
        status = page.locator("#copy-pay-link-status").inner_text()
        assert ("copied" if said == "Copied" else "press Ctrl+C") in status
        # Either way the link is selected, ready for Ctrl+C.
        assert page.evaluate("window.getSelection().toString().trim()") == link
        page.screenshot(path=str(SHOT), full_page=True)
        signed_in = context.storage_state()
    finally:
        context.close()
    # axe is injected inline, which the page's CSP (rightly) refuses: a second window, same
    # session, that bypasses it (the steps above ran under the real CSP).
    context = chromium.new_context(
        viewport={"width": 390, "height": 900}, bypass_csp=True, storage_state=signed_in
    )
    try:
        page = context.new_page()
        page.goto(f"{invoice_url}#payment-link")
        page.locator("#copy-pay-link").click()
        assert _axe(page) == []
    finally:
        context.close()
    assert errors == [], errors
    assert SHOT.stat().st_size > 5_000


def test_without_script_the_link_is_shown_and_no_dead_button(
    chromium,  # noqa: F811
    live,  # noqa: F811
    demo_company,
):
    context, page, invoice_url = _sign_in(chromium, live, demo_company, java_script_enabled=False)
    try:
        page.goto(invoice_url)
        page.get_by_role("button", name="Create payment link").click()
        page.wait_for_url("**#payment-link")
        assert page.locator("#pay-link").inner_text().startswith(f"{live.base_url}/pay/")
        assert not page.locator("#copy-pay-link").is_visible()
    finally:
        context.close()
