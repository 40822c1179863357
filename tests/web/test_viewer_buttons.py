"""A viewer reads every owner page and finds no button they cannot use (issue 13): every form
that posts to a company's page shows its buttons only when `can()` allows the endpoint
(web/common.py, enforce_role). A collector sees only the call list's and the replies' buttons."""

from __future__ import annotations

import pytest

from tests.web.conftest import parse
from tests.web.test_a11y_browser import _site
from tests.web.test_roles import _add_user, _sign_in_as


def _buttons_by_form(html: bytes, slug: str, path: str = "") -> dict[str, int]:
    """The POST forms to the company's pages that show a button, by action (a form without
    one posts to the page's own path)."""
    shown: dict[str, int] = {}
    for form in parse(html).find_all("form"):
        action = form.attrs.get("action") or path.split("?")[0]
        if form.attrs.get("method", "get").lower() != "post" or not action.startswith(
            f"/c/{slug}/"
        ):
            continue
        buttons = [
            b
            for b in form.iter()
            if (b.tag == "button" and b.attrs.get("type", "submit") == "submit")
            or (b.tag == "input" and b.attrs.get("type") in ("submit", "image"))
        ]
        if buttons:
            shown[action] = shown.get(action, 0) + len(buttons)
    return shown


@pytest.mark.parametrize(
    ("role", "allowed"), [("viewer", ()), ("collector", ("/done", "/resolve"))]
)
def test_no_owner_page_shows_a_button_the_role_cannot_use(client, rt, demo_company, role, allowed):
    site = _site(rt, demo_company)
    user = _add_user(rt, demo_company, f"{role}@acme.example", role)
    _sign_in_as(client, rt, demo_company, user)
    found = {}
    for name, path in site.owner.items():
        page = client.get(path)
        assert page.status_code == 200, (name, page.status_code)
        shown = {
            a: n
            for a, n in _buttons_by_form(page.data, demo_company.slug, path).items()
            if not a.endswith(allowed) or not allowed
        }
        if shown:
            found[name] = shown
    assert found == {}
    if role == "collector":  # and the calls they may log are there to log
        calls = _buttons_by_form(client.get(site.owner["calls"]).data, demo_company.slug)
        assert any(a.endswith("/done") for a in calls)


def test_the_check_sees_a_button_an_owner_may_use(owner_client, rt, demo_company):
    site = _site(rt, demo_company)
    page = owner_client.get(site.owner["customer"])
    assert any(a.endswith("/notes") for a in _buttons_by_form(page.data, demo_company.slug))
