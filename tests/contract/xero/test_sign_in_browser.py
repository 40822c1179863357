"""Sign up with Xero in a real browser: the sign-in page's button, Xero's consent (its page is
Xero's own, so the browser's request for it is answered with Xero's redirect back), the choice of
organisations, the new companies and the switcher between them. Screenshots for a human to look
at: /tmp/arbridge-xero-sign-in.png, /tmp/arbridge-xero-sign-up.png, /tmp/arbridge-xero-switch.png.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

SIGN_IN_PNG = Path("/tmp/arbridge-xero-sign-in.png")
SIGN_UP_PNG = Path("/tmp/arbridge-xero-sign-up.png")
SWITCH_PNG = Path("/tmp/arbridge-xero-switch.png")


def test_sign_up_with_xero_then_switch_companies(chromium, live, fake):  # noqa: F811
    cafe = fake.add_organisation("Harbor Cafe Ltd")
    context = chromium.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" else None,
    )

    def consent(route) -> None:
        """Xero's consent page: the person agrees, Xero sends the browser back with a code."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(route.request.url).query).items()}
        code = fake.issue_code(nonce=query["nonce"])
        back = urlencode({"code": code, "state": query["state"], "scope": query["scope"]})
        route.fulfill(status=302, headers={"Location": f"{live.base_url}/xero/callback?{back}"})

    page.route("https://login.xero.com/**", consent)
    try:
        page.goto(f"{live.base_url}/")
        page.wait_for_url(f"{live.base_url}/signed-out")
        page.screenshot(path=str(SIGN_IN_PNG))
        page.get_by_role("link", name="Sign in with Xero").click()

        page.wait_for_url(f"{live.base_url}/xero/callback?*")
        assert page.locator("h1").inner_text() == "Welcome, Ana Ruiz"
        boxes = page.locator('#xero-sign-up input[type="checkbox"]')
        assert boxes.count() == 2
        assert all(boxes.nth(i).is_checked() for i in range(2))
        page.screenshot(path=str(SIGN_UP_PNG))
        page.get_by_role("button", name="Create companies").click()

        page.wait_for_url(f"{live.base_url}/c/harbor-bakery-ltd/settings#connections")
        assert "Harbor Bakery Ltd, Harbor Cafe Ltd connected" in page.content()
        switcher = page.locator("#switch-company select")
        assert switcher.locator("option").all_inner_texts() == [
            "Harbor Bakery Ltd",
            "Harbor Cafe Ltd",
        ]
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SWITCH_PNG))
        switcher.select_option(label="Harbor Cafe Ltd")
        page.get_by_role("button", name="Switch").click()
        page.wait_for_url(f"{live.base_url}/c/harbor-cafe-ltd/")
        assert page.locator("#switch-company select").input_value() == "harbor-cafe-ltd"
    finally:
        context.close()
    assert problems == []
    assert cafe in {c["tenantId"] for c in fake.connections}
