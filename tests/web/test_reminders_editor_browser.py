"""The reminders editor in a real browser: steps and the dry run in words, a merge field inserted
at the cursor, the server-rendered preview following the typing, the wording saved; and the same
editor without JavaScript (the fields listed, the Preview button). Screenshots at 1366 and 390 px
go to /tmp/arbridge-reminders-*.png for a human to look at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from arbridge.readmodels.reminders import first_open_invoice
from arbridge.sync.model import Customer
from tests.web.conftest import fresh_company, new_sign_in_token
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

# What a person must never read on the page: step keys, wording keys, escalation keys.
INTERNAL = re.compile(
    r"\b(before|after)-\d+\b|overdue_firm|overdue_friendly|final_notice|"
    r"due_today|notify_owner|call_guide|Message-ID"
)


def _sign_in(page, server, company) -> None:
    page.goto(f"{server.base_url}/sign-in/{new_sign_in_token(server.rt, company)}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.base_url}/c/{company.slug}/")


def _watch(page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    return problems


def _open(browser, width: int, height: int, javascript: bool = True):
    """A fresh context and page of that size, its errors collected."""
    context = browser.new_context(
        viewport={"width": width, "height": height}, java_script_enabled=javascript
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    return context, page, _watch(page)


def _fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_insert_a_merge_field_see_the_preview_follow_save_and_read_the_dry_run(
    chromium,  # noqa: F811
    live,  # noqa: F811
    demo_company,
):
    company = fresh_company(live.rt, demo_company.slug)
    with live.rt.sessions() as s:
        sample = first_open_invoice(s, company.id)
        customer_name = s.get(Customer, sample.customer_id).name
    context, page, problems = _open(chromium, 1366, 900)
    url = f"{live.base_url}/c/demo/reminders"
    try:
        _sign_in(page, live, company)
        page.goto(f"{url}?template=overdue_friendly")

        # The dry run: a table, each row's step in words and a send time in Chicago time.
        rows = page.locator("table#plan tbody tr")
        assert rows.count() > 0
        assert "America/Chicago" in page.locator("table#plan thead").inner_text()
        email = rows.filter(
            has=page.locator('td[data-label="Channel"]', has_text=re.compile(r"^email$"))
        ).first.inner_text()
        assert re.search(r"\d+ days? (before|after) due: \S+ email|On the due date", email), email
        assert re.search(r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d\d:\d\d C[SD]T", email), email
        call = rows.filter(
            has=page.locator('td[data-label="Channel"]', has_text="phone call")
        ).first.inner_text()
        assert "45 days after due: phone call" in call and "Added to your call list" in call
        # The steps as readable rows.
        steps = page.locator("table#steps tbody th").all_inner_texts()
        assert "3 days before due: heads-up email" in steps
        assert "45 days after due: phone call, and you're told" in steps
        assert not INTERNAL.search(page.locator("main").inner_text())
        assert _fits(page)
        page.screenshot(path="/tmp/arbridge-reminders-1366.png", full_page=True)

        # The fields are buttons (the script shows them, hides the no-JS list).
        assert page.locator("#merge-list").is_hidden()
        text = page.locator("#text")
        text.click()
        text.press("Control+End")
        text.type("\nMarker for ")
        page.get_by_role("button", name="Customer's name", exact=True).click()
        assert text.input_value().endswith("\nMarker for {{ customer_name }}")
        body = page.locator("#preview-body")
        page.wait_for_function(
            "name => document.getElementById('preview-body').textContent"
            ".includes('Marker for ' + name)",
            arg=customer_name,
        )
        assert "/sample-link" in body.inner_text()  # inert links in the preview
        assert "{{" not in body.inner_text()
        # The HTML version follows too, with its Pay button leading to the sample page.
        html = page.frame_locator("#html-preview iframe:not([hidden])")
        html.get_by_text(f"Marker for {customer_name}").wait_for()
        button = html.locator("a.pay-button")
        assert button.get_attribute("href") == f"{live.base_url}/sample-link"
        assert button.inner_text().startswith("Pay ")
        assert page.locator("#html-preview iframe").count() == 1
        page.locator("#templates").screenshot(path="/tmp/arbridge-reminders-templates-1366.png")
        page.screenshot(path="/tmp/arbridge-reminders-editor-1366.png", full_page=False)

        # A broken wording: the preview says why, in a sentence, without a page load.
        text.press("Control+End")
        text.type(" {{ nope }}")
        page.locator("#preview-error").wait_for()
        assert "does not render" in page.locator("#preview-error").inner_text()
        text.press("Control+End")
        for _ in range(len(" {{ nope }}")):
            text.press("Backspace")
        body.wait_for()

        page.get_by_role("button", name="Save wording").click()
        page.wait_for_url(f"{url}?template=overdue_friendly#templates")
        assert "Wording saved: Friendly reminder." in page.locator("main").inner_text()
        saved = fresh_company(live.rt, "demo").settings["reminders"]["templates"]
        assert saved["overdue_friendly"]["text"].endswith("Marker for {{ customer_name }}")
        assert f"Marker for {customer_name}" in page.locator("#preview-body").inner_text()

        # A phone: the page fits its width, the tables become stacked rows.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{url}?template=overdue_friendly")
        assert _fits(page)
        page.screenshot(path="/tmp/arbridge-reminders-390.png", full_page=True)
        for part in ("sequence", "templates"):
            page.locator(f"#{part}").screenshot(path=f"/tmp/arbridge-reminders-{part}-390.png")
    finally:
        context.close()
    assert problems == [], problems
    for size in ("1366", "390"):
        assert Path(f"/tmp/arbridge-reminders-{size}.png").stat().st_size > 20_000


def test_without_javascript_the_fields_are_listed_and_preview_shows_the_draft(
    chromium,  # noqa: F811
    live,  # noqa: F811
    demo_company,
):
    company = fresh_company(live.rt, demo_company.slug)
    context, page, problems = _open(chromium, 1366, 900, javascript=False)
    try:
        _sign_in(page, live, company)
        page.goto(f"{live.base_url}/c/demo/reminders?template=overdue")
        assert page.locator("#merge-list").is_visible()
        assert "{{ invoice_list }}" in page.locator("#merge-list").inner_text()
        assert page.locator("#merge-fields button").first.is_hidden()
        page.locator("#subject").fill("Still open: {{ invoice_number }}")
        page.get_by_role("button", name="Preview").click()
        page.wait_for_url(f"{live.base_url}/c/demo/reminders/preview#templates")
        assert page.locator("#draft-note").is_visible()
        assert page.locator("#subject").input_value() == "Still open: {{ invoice_number }}"
        assert page.locator("#preview-subject").inner_text().startswith("Still open: ")
    finally:
        context.close()
    assert problems == [], problems
    assert "templates" not in (fresh_company(live.rt, "demo").settings.get("reminders") or {})


def test_a_test_email_opens_from_the_mailbox_row_as_the_recipient_sees_it(
    chromium,  # noqa: F811
    live,  # noqa: F811
    demo_company,
):
    from arbridge.worker import drain

    company = fresh_company(live.rt, demo_company.slug)
    context, page, problems = _open(chromium, 390, 844)
    try:
        _sign_in(page, live, company)
        page.goto(f"{live.base_url}/c/demo/reminders?template=final_notice")
        page.get_by_role("button", name="Send me a test email").click()
        page.wait_for_url(f"{live.base_url}/c/demo/reminders?template=final_notice")
        drain(live.rt)
        page.goto(f"{live.base_url}/c/demo/mailbox")
        row = page.locator("table#mailbox tbody tr").first
        assert "Test email" in row.inner_text()
        row.locator('td[data-label="Kind"]').click()  # anywhere on the row opens it
        page.wait_for_url(re.compile(r".*/c/demo/mailbox/\d+$"))
        assert page.locator("#kind").inner_text() == "Test email"
        seen = page.frame_locator("#as-seen iframe")
        button = seen.locator("a.pay-button")
        assert button.get_attribute("href") == f"{live.base_url}/sample-link"
        assert not INTERNAL.search(page.locator("main").inner_text())
        assert _fits(page)
        page.screenshot(path="/tmp/arbridge-mail-message-390.png", full_page=True)
    finally:
        context.close()
    assert problems == [], problems
