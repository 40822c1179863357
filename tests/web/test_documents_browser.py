"""In a real browser: the customer downloads the statement from its pay page; the PDF names the
very link the page was opened with."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader

from arbridge.sync.db import transaction
from arbridge.sync.model import Customer
from arbridge.sync.store import issue_statement_token, open_invoices
from tests.web.test_browser import chromium, live  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def test_customer_downloads_the_statement_from_the_pay_page(chromium, live, demo_company):  # noqa: F811
    rt = live.rt
    with transaction(rt.sessions) as s:
        inv = next(i for i in open_invoices(s, demo_company.id) if i.currency == "USD")
        token = issue_statement_token(s, rt.clock, s.get(Customer, inv.customer_id))
        name = inv.customer.name
        numbers = [
            i.number for i in open_invoices(s, demo_company.id) if i.customer_id == inv.customer_id
        ]
    context = chromium.new_context(viewport={"width": 1000, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{live.base_url}/pay/{token}")
        with page.expect_download() as info:
            page.locator("#statement-pdf").click()
        download = info.value
        assert download.suggested_filename.startswith(f"statement-demo-{inv.customer_id}-")
        data = Path(download.path()).read_bytes()
    finally:
        context.close()
    assert problems == [], problems
    text = " ".join(
        " ".join(p.extract_text(extraction_mode="layout").split())
        for p in PdfReader(io.BytesIO(data)).pages
    )
    assert f"{live.base_url}/pay/{token}" in text
    assert name in text and all(n in text for n in numbers)
