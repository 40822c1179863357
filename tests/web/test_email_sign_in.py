"""Signing in again: "email me a sign-in link" answers the same whether or not the address can
sign in, sends a one-time link through real SMTP (aiosmtpd) to a known owner, at most a few an
hour, and the mailbox keeps the email without the link."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from arbridge.runtime import Runtime
from arbridge.sync.db import transaction
from arbridge.sync.model import MailMessage
from arbridge.sync.people import SIGN_IN_LINKS_PER_HOUR
from arbridge.sync.store import create_company
from arbridge.web import create_app
from arbridge.worker import drain
from tests.contract.email.server import smtp_server
from tests.web.conftest import csrf_token, parse


@pytest.fixture
def smtp(tmp_path):
    with smtp_server(tmp_path) as server:
        yield server


@pytest.fixture
def mail_rt(settings, clock, smtp):
    rt = Runtime.open(settings.with_(smtp_url=smtp.url), clock)
    with transaction(rt.sessions) as s:
        create_company(
            s, rt.clock, name="Harbor Bakery", slug="harbor", home_currency="USD",
            timezone="UTC", country="US", owner_email="Owner@Harbor.example",
        )  # fmt: skip
    yield rt
    rt.close()


def ask(client, email: str):
    token = csrf_token(client.get("/signed-out").data)
    return client.post("/sign-in/email", data={"csrf_token": token, "email": email})


def test_a_known_owner_gets_a_one_time_link_and_a_stranger_the_same_answer(mail_rt, smtp):
    client = create_app(mail_rt).test_client()
    assert parse(client.get("/signed-out").data).by_id("email-sign-in") is not None
    known = ask(client, "owner@harbor.example")
    unknown = ask(client, "nobody@elsewhere.example")
    assert known.status_code == unknown.status_code == 200
    assert known.get_data(as_text=True) == unknown.get_data(as_text=True)
    drain(mail_rt)
    [sent] = smtp.inbox.messages
    assert sent.rcpt_tos == ["Owner@Harbor.example"]
    body = sent.message.get_body(("plain",)).get_content()
    link = next(w for w in body.split() if "/sign-in/" in w)
    path = link.removeprefix(mail_rt.settings.base_url)
    page = client.get(path)
    assert client.post(path, data={"csrf_token": csrf_token(page.data)}).status_code == 302
    assert client.get("/").headers["Location"] == "/c/harbor/"
    fresh = create_app(mail_rt).test_client()  # the link works once
    page = fresh.get(path)
    assert fresh.post(path, data={"csrf_token": csrf_token(page.data)}).status_code == 404
    with mail_rt.sessions() as s:
        kept = s.scalars(select(MailMessage)).one()
    assert "/sign-in/" not in kept.text_body and "not kept here" in kept.text_body


def test_at_most_a_few_links_an_hour_reach_one_owner(mail_rt, smtp, clock):
    client = create_app(mail_rt).test_client()
    for _ in range(SIGN_IN_LINKS_PER_HOUR + 3):
        clock.advance(timedelta(minutes=2))
        assert ask(client, "owner@harbor.example").status_code == 200
    drain(mail_rt)
    assert len(smtp.inbox.messages) == SIGN_IN_LINKS_PER_HOUR
    clock.advance(timedelta(hours=1))
    ask(client, "owner@harbor.example")
    drain(mail_rt)
    assert len(smtp.inbox.messages) == SIGN_IN_LINKS_PER_HOUR + 1


def test_without_outgoing_mail_the_form_is_not_offered(client):
    assert parse(client.get("/signed-out").data).by_id("email-sign-in") is None
