"""Receipt confirmed, in a real browser: chromium opening the pay link runs the page's script,
whose POST marks the invoice viewed; plain GETs of the same link (the test client, and a bare
HTTP fetch like a mail scanner's) record nothing."""

from __future__ import annotations

import urllib.request
from datetime import timedelta

import pytest

from arbridge.clock import local_text
from arbridge.sync.db import transaction
from arbridge.sync.model import Invoice
from arbridge.sync.store import issue_pay_token, open_invoices
from arbridge.web import create_app
from tests.web.conftest import fresh_company, new_sign_in_token
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def _viewed_at(rt, invoice_id: int):
    with rt.sessions() as s:
        return s.get(Invoice, invoice_id).viewed_at


def test_a_browser_opening_the_link_marks_it_viewed_and_a_plain_get_does_not(
    chromium,  # noqa: F811
    live,  # noqa: F811
    demo_company,
):
    rt = live.rt
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.number)
        invoice_id, number = inv.id, inv.number
        token = issue_pay_token(s, rt.clock, inv)
    url = f"{live.base_url}/pay/{token}"

    # What a mail scanner or a link preview does: fetch the page, run nothing.
    page_get = create_app(rt, TESTING=True).test_client().get(f"/pay/{token}")
    assert page_get.status_code == 200 and b"/static/viewed.js" in page_get.data
    with urllib.request.urlopen(url, timeout=10) as fetched:
        assert fetched.status == 200
    assert _viewed_at(rt, invoice_id) is None

    problems: list[str] = []
    context = chromium.new_context(viewport={"width": 1000, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on(
            "response",
            lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        with page.expect_response(lambda r: r.url == f"{url}/viewed") as posted:
            page.goto(url)
        assert posted.value.request.method == "POST"
        assert posted.value.status == 204
        assert page.locator("h1").inner_text() == f"Invoice {number}"
        first = rt.clock.now()
        assert _viewed_at(rt, invoice_id) == first

        # A later visit (the clock moved on) keeps the first view's time.
        rt.clock.advance(timedelta(days=1))
        with page.expect_response(lambda r: r.url == f"{url}/viewed") as again:
            page.reload()
        assert again.value.status == 204
        assert _viewed_at(rt, invoice_id) == first

        # The owner, signed in elsewhere, sees it on the invoice's page.
        owner = context.browser.new_context().new_page()
        owner.set_default_timeout(20_000)
        owner.goto(f"{live.base_url}/sign-in/{new_sign_in_token(rt, fresh_company(rt, 'demo'))}")
        owner.get_by_role("button", name="Sign in").click()
        owner.wait_for_url(f"{live.base_url}/c/demo/")
        owner.goto(f"{live.base_url}/c/demo/invoices/{invoice_id}")
        assert owner.locator("#viewed").inner_text() == (
            f"first opened by the customer {local_text(first, 'America/Chicago')}"
        )
        owner.context.close()
    finally:
        context.close()
    assert problems == [], problems
