"""In a real browser: the text message editor counts characters and segments as the owner
types (sms.js, allowed by the Content-Security-Policy as a file of its own), GSM-7 to UCS-2."""

from __future__ import annotations

import pytest

from tests.web.conftest import fresh_company, new_sign_in_token
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def test_the_sms_editor_counts_segments_as_the_owner_types(chromium, live):  # noqa: F811
    context = chromium.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        company = fresh_company(live.rt, "demo")
        page.goto(f"{live.base_url}/sign-in/{new_sign_in_token(live.rt, company)}")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{live.base_url}/c/demo/")
        page.goto(f"{live.base_url}/c/demo/reminders#sms-wording")
        out = page.locator("#sms-length")
        assert "1 segment (GSM-7" in out.inner_text()  # the server's count, before typing
        box = page.locator("#sms-template")
        box.fill("a" * 137)  # with " Reply STOP to opt out." (23): 160, one segment
        assert "160 characters, 1 segment (GSM-7, 160 per segment)" in out.inner_text()
        box.fill("a" * 138)
        assert "161 characters, 2 segments (GSM-7, 153 per segment)" in out.inner_text()
        box.fill("a" * 136 + "€")  # 160 characters, but € takes two septets: 161
        assert "160 characters, 2 segments (GSM-7, 153 per segment)" in out.inner_text()
        box.fill("Zapłać dziś")  # ł is outside GSM-7: UCS-2
        assert "1 segment (UCS-2, 70 per segment)" in out.inner_text()
        page.get_by_role("button", name="Save text wording").click()
        page.wait_for_url(f"{live.base_url}/c/demo/reminders#sms-wording")
        assert "Wording saved" in page.locator("main").inner_text()
    finally:
        context.close()
    assert problems == [], problems
