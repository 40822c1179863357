"""`next=` sends the owner back to a page of this site and nowhere else (issue 8, low)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from arbridge.sync.model import Invoice
from tests.web.conftest import csrf_token

HOSTILE = [
    "https://evil.example/phish",
    "//evil.example/phish",
    "/\\evil.example/phish",
    "\\\\evil.example",
    "javascript:alert(document.cookie)",
    "JaVaScRiPt:alert(1)",
    " https://evil.example",
    "http:evil.example",
    "/c/demo/\r\nSet-Cookie: x=1",
    "data:text/html,<script>alert(1)</script>",
]


def _urls(rt, demo_company) -> list[str]:
    with rt.sessions() as s:
        inv = s.scalars(
            select(Invoice).where(Invoice.company_id == demo_company.id).order_by(Invoice.id)
        ).first()
    return [
        f"/c/demo/invoices/{inv.id}/pause",
        f"/c/demo/customers/{inv.customer_id}/do-not-chase",
    ]


@pytest.mark.parametrize("target", HOSTILE)
def test_next_that_leaves_the_site_is_replaced_by_the_reminders_page(
    owner_client, rt, demo_company, target
):
    token = csrf_token(owner_client.get("/c/demo/reminders").data)
    for url in _urls(rt, demo_company):
        response = owner_client.post(url, data={"csrf_token": token, "next": target})
        assert response.status_code == 302
        assert response.headers["Location"] == "/c/demo/reminders", (url, target)


def test_next_on_this_site_is_followed(owner_client, rt, demo_company):
    token = csrf_token(owner_client.get("/c/demo/reminders").data)
    for url in _urls(rt, demo_company):
        response = owner_client.post(
            url, data={"csrf_token": token, "next": "/c/demo/customers/1/case-file.json?x=1#a"}
        )
        assert response.headers["Location"] == "/c/demo/customers/1/case-file.json?x=1#a"
