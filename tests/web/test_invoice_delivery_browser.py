"""The owner sees the invoices never sent on the dashboard and sends them, in a real browser:
one with its own Send, then the rest with Send all; the worker sends each once through the demo
ledger and the list empties. A screenshot goes to /tmp/arbridge-unsent.png for a human."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbridge.demo import DEMO_TENANT
from arbridge.readmodels.delivery import unsent_invoices
from arbridge.services.bootstrap import outbox_handlers
from arbridge.sync.outbox import deliver
from tests.web.conftest import fresh_company, new_sign_in_token
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

SHOT = Path("/tmp/arbridge-unsent.png")


def test_the_owner_sends_unsent_invoices_from_the_dashboard(chromium, live, demo_company):  # noqa: F811
    rt = live.rt
    company = fresh_company(rt, demo_company.slug)
    with rt.sessions() as s:
        found = unsent_invoices(s, company.id, limit=100)
    first = found.rows[0].invoice
    page = chromium.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    page.goto(f"{live.base_url}/sign-in/{new_sign_in_token(rt, company)}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live.base_url}/c/demo/")

    section = page.locator("section#unsent")
    assert f"{found.count} invoices" in section.locator("h2").inner_text()
    section.screenshot(path=str(SHOT))
    row = section.locator(f'tr[data-invoice="{first.id}"]')
    row.get_by_role("button", name=f"Send invoice {first.number}").click()
    page.wait_for_url(f"{live.base_url}/c/demo/#unsent")
    assert "1 invoice on their way" in page.locator(".flash").first.inner_text()
    assert "Sending…" in section.locator(f'tr[data-invoice="{first.id}"]').inner_text()

    # The rest, at once; the worker sends them all, each once, through the demo ledger.
    section.get_by_role("button", name=f"Send all {found.count}").click()
    page.wait_for_url(f"{live.base_url}/c/demo/#unsent")
    assert deliver(rt.sessions, rt.clock, outbox_handlers(rt)) == found.count
    sent = rt.demo_ledger(DEMO_TENANT).read()["Sent"]
    assert sorted(s["invoiceId"] for s in sent) == sorted(r.invoice.source_id for r in found.rows)
    page.reload()
    assert page.locator("section#unsent").count() == 0

    page.goto(f"{live.base_url}/c/demo/invoices/{first.id}")
    assert "sent to the customer by arbridge" in page.locator("#sent").inner_text()
    assert problems == []
