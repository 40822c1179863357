"""Secrets in URLs never reach the logs (issue 8, low): sign-in, invitation, pay (and statement)
and unsubscribe tokens are redacted from the paths the CSRF and crash handlers log."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from arbridge.services.reminders.unsubscribe import unsubscribe_token
from arbridge.sync.db import transaction
from arbridge.sync.model import Contact, Customer, Invoice
from arbridge.sync.store import issue_pay_token, issue_statement_token
from arbridge.web import create_app
from tests.web.conftest import new_sign_in_token


@pytest.fixture
def tokens(rt, demo_company) -> dict[str, str]:
    with transaction(rt.sessions) as s:
        inv = s.scalars(
            select(Invoice).where(Invoice.company_id == demo_company.id).order_by(Invoice.id)
        ).first()
        contact = s.scalars(select(Contact).where(Contact.customer_id == inv.customer_id)).first()
        return {
            "sign_in": new_sign_in_token(rt, demo_company),
            "pay": issue_pay_token(s, rt.clock, inv),
            "statement": issue_statement_token(s, rt.clock, s.get(Customer, inv.customer_id)),
            "unsubscribe": unsubscribe_token(rt.settings.secret_key, contact.id),
            "invitation": "inv-" + "q" * 40,
        }


def _posts(t: dict[str, str]) -> list[str]:
    return [
        f"/sign-in/{t['sign_in']}",
        f"/pay/{t['pay']}/checkout",
        f"/pay/{t['pay']}/respond",
        f"/pay/{t['statement']}/checkout",
        f"/invitations/{t['invitation']}",
    ]


def _gets(t: dict[str, str]) -> list[str]:
    return [
        f"/sign-in/{t['sign_in']}",
        f"/pay/{t['pay']}",
        f"/pay/{t['statement']}",
        f"/u/{t['unsubscribe']}",
        f"/invitations/{t['invitation']}",
    ]


def _assert_no_token(caplog, tokens: dict[str, str]) -> None:
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    for name, token in tokens.items():
        assert token not in text, f"the {name} token reached the log"


def test_a_csrf_failure_on_a_token_route_logs_no_token(client, caplog, tokens):
    caplog.set_level(logging.INFO)
    for url in _posts(tokens):
        response = client.post(url, data={})  # no CSRF token: refused
        assert response.status_code == 400, url
    assert sum("CSRF check failed" in r.getMessage() for r in caplog.records) == len(_posts(tokens))
    assert any("[redacted]" in r.getMessage() for r in caplog.records)
    _assert_no_token(caplog, tokens)


def test_a_crash_on_a_token_route_logs_no_token(rt, caplog, tokens):
    app = create_app(rt, TESTING=True)

    @app.before_request
    def _crash() -> None:  # the database going away mid-request, say
        raise RuntimeError("connection to the database was lost")

    client = app.test_client()
    caplog.set_level(logging.INFO)
    for url in _gets(tokens):
        assert client.get(url).status_code == 500
    assert sum("unhandled error" in r.getMessage() for r in caplog.records) == len(_gets(tokens))
    _assert_no_token(caplog, tokens)
