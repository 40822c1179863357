"""The owner's pages that show the product (issue 13, Build): the navigation with its counts,
the customers list and page, the invoices list and the payments page."""

from __future__ import annotations

from sqlalchemy import select

from arbridge.sync.db import transaction
from arbridge.sync.model import CallTask, Invoice, InvoiceHold
from tests.web.conftest import parse


def _nav(html: bytes) -> list[str]:
    doc = parse(html)
    return [a.attrs["data-section"] for a in doc.by_id("main-nav").find_all("a")]


def test_the_navigation_names_every_section_and_marks_the_current_one(owner_client):
    page = owner_client.get("/c/demo/reminders")
    assert page.status_code == 200
    sections = _nav(page.data)
    assert sections[0] == "dashboard" and sections[-1] == "settings"
    for name in ("plans", "reminders", "calls"):
        assert name in sections
    current = parse(page.data).by_id("main-nav").find_all("a", aria_current="page")
    assert [a.attrs["data-section"] for a in current] == ["reminders"]
    # The company's name and the sign-out button stay.
    assert b"Acme Supply Co." in page.data and b"Sign out" in page.data


def test_the_navigation_counts_calls_to_make_and_replies_waiting(owner_client, rt, demo_company):
    doc = parse(owner_client.get("/c/demo/").data)
    assert doc.by_id("nav-calls") is None and doc.by_id("nav-replies") is None  # nothing waits
    with transaction(rt.sessions) as s:
        inv = s.scalars(
            select(Invoice).where(Invoice.company_id == demo_company.id).order_by(Invoice.id)
        ).first()
        now = rt.clock.now()
        for n in range(3):
            s.add(
                CallTask(
                    company_id=demo_company.id,
                    customer_id=inv.customer_id,
                    key=f"nav:call:{n}",
                    step_key="call",
                    invoice_ids=[inv.id],
                    reason="A call step",
                    created_at=now,
                    done_at=now if n == 2 else None,  # done: not counted
                )
            )
        for kind, resolved in (("dispute", None), ("dispute", now), ("promise", None)):
            s.add(
                InvoiceHold(
                    company_id=demo_company.id,
                    invoice_id=inv.id,
                    kind=kind,
                    created_by="customer",
                    created_at=now,
                    resolved_at=resolved,
                )
            )
    doc = parse(owner_client.get("/c/demo/settings").data)
    calls, replies = doc.by_id("nav-calls"), doc.by_id("nav-replies")
    assert calls.children[0] == "2" and calls.find("span").text == "to make"
    assert replies.children[0] == "1" and replies.find("span").text == "reply waiting"
