"""Stripe's common delivery answered in front of Flask (web/stripe_front.py, issue 14): the same
answer as the view, byte for byte, and everything else handed to the view untouched."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import func, select
from werkzeug.test import Client

from arbridge.connectors.stripe.simulated import sign
from arbridge.services.payments.webhook_secrets import simulated_webhook_secret
from arbridge.sync.model import CollectedPayment, WebhookDelivery, WebhookEvent
from arbridge.web import create_app
from arbridge.worker import drain


@pytest.fixture
def counted_app(rt):
    """An app of its own that counts the requests Flask's machinery handled."""
    app = create_app(rt, TESTING=True)
    app.handled = 0

    @app.before_request
    def _count() -> None:
        app.handled += 1

    return app


def delivery(rt, n, secret=None, **extra):
    event = {
        "id": f"evt_front_{n}",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(rt.clock.now().timestamp()),
        "data": {"object": {"id": f"cs_front_{n}", "object": "checkout.session"}},
        **extra,
    }
    body = json.dumps(event).encode()
    stamp = int(rt.clock.now().timestamp())
    return body, {
        "Stripe-Signature": sign(body, secret or simulated_webhook_secret(rt), stamp),
        "Content-Type": "application/json; charset=utf-8",
    }


def postgres_only(rt):
    if rt.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores every delivery in a transaction: the view does it")


def stored(rt, model=WebhookEvent):
    with rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_the_common_delivery_skips_flask_and_gets_the_views_answer_byte_for_byte(rt, counted_app):
    postgres_only(rt)
    front = counted_app.test_client()
    view = Client(counted_app.wsgi_app.wsgi_app)  # the Flask app the front wraps
    body, headers = delivery(rt, 1)
    fast = front.post("/webhooks/stripe", data=body, headers=headers)
    assert counted_app.handled == 0  # answered in front of Flask
    body, headers = delivery(rt, 2)
    slow = view.post("/webhooks/stripe", data=body, headers=headers)
    assert counted_app.handled == 1
    assert (fast.status, fast.data) == (slow.status, slow.data) == ("200 OK", slow.data)
    assert sorted(fast.headers.items()) == sorted(slow.headers.items())
    assert fast.json == {"received": True, "duplicate": False}
    assert fast.headers["Cache-Control"] == "no-store" and "Set-Cookie" not in fast.headers
    assert stored(rt) == 2


def test_a_resend_in_new_bytes_is_answered_in_front_as_a_duplicate(rt, counted_app):
    postgres_only(rt)
    front = counted_app.test_client()
    body, headers = delivery(rt, 3)
    assert front.post("/webhooks/stripe", data=body, headers=headers).status_code == 200
    body = body.replace(b'"object": "event"', b'"object":"event"')  # same event, other bytes
    headers["Stripe-Signature"] = sign(
        body, simulated_webhook_secret(rt), int(rt.clock.now().timestamp())
    )
    again = front.post("/webhooks/stripe", data=body, headers=headers)
    assert again.json == {"received": True, "duplicate": True} and counted_app.handled == 0
    assert stored(rt) == 1 and stored(rt, WebhookDelivery) == 2


def test_what_the_front_does_not_answer_reaches_the_view_with_its_body(rt, counted_app, caplog):
    front = counted_app.test_client()

    def by_the_view(response):
        assert counted_app.handled == by_the_view.seen + 1, "the view answered it"
        by_the_view.seen = counted_app.handled
        return response

    by_the_view.seen = 0
    body, headers = delivery(rt, 4, secret="whsec_forged")
    with caplog.at_level(logging.WARNING, logger="arbridge.web.pay"):
        forged = by_the_view(front.post("/webhooks/stripe", data=body, headers=headers))
    assert (forged.status_code, forged.json) == (400, {"error": "invalid signature"})
    assert "refused a Stripe delivery" in caplog.text
    body, headers = delivery(rt, 5)
    first = front.post("/webhooks/stripe", data=body, headers=headers)
    by_the_view.seen = counted_app.handled  # in front on PostgreSQL, by the view on SQLite
    repeat = by_the_view(front.post("/webhooks/stripe", data=body, headers=headers))
    assert first.json["duplicate"] is False and repeat.json["duplicate"] is True
    with rt.sessions() as s:
        assert s.scalar(select(WebhookDelivery.repeats)) == 1  # the view counts a repeat
    body, headers = delivery(rt, 6)
    queried = by_the_view(front.post("/webhooks/stripe?x=1", data=body, headers=headers))
    assert queried.status_code == 200
    body, headers = delivery(rt, 7, account="acct_connected")  # a Connect account's event
    assert (
        by_the_view(front.post("/webhooks/stripe", data=body, headers=headers)).status_code == 200
    )
    body, headers = delivery(rt, 8)
    headers["Content-Type"] = "text/plain"
    assert (
        by_the_view(front.post("/webhooks/stripe", data=body, headers=headers)).status_code == 200
    )
    assert stored(rt) == 4
    assert by_the_view(front.get("/webhooks/stripe")).status_code == 405


def test_an_oversized_body_is_refused_by_the_app_unread(rt, counted_app):
    front = counted_app.test_client()
    body, headers = delivery(rt, 9, padding="x" * (1024 * 1024))
    refused = front.post("/webhooks/stripe", data=body, headers=headers)
    assert refused.status_code == 413 and counted_app.handled == 1
    assert stored(rt) == 0


def test_a_deeply_nested_body_was_a_500_not_a_refused_delivery(rt, counted_app):
    # Unsigned: parsed to choose the secrets to try, and Python's JSON parser ran out of stack.
    body = b"[" * 100_000 + b"]" * 100_000
    headers = {"Stripe-Signature": "t=1,v1=00", "Content-Type": "application/json"}
    answer = counted_app.test_client().post("/webhooks/stripe", data=body, headers=headers)
    assert (answer.status_code, answer.json) == (400, {"error": "invalid signature"})
    # Signed, by the install's own secret: refused as no Stripe event, nothing stored.
    deep = b'{"id": "evt_deep", "type": "x", "data": {"object": {"a": ' + body + b"}}}"
    stamp = int(rt.clock.now().timestamp())
    headers["Stripe-Signature"] = sign(deep, simulated_webhook_secret(rt), stamp)
    answer = counted_app.test_client().post("/webhooks/stripe", data=deep, headers=headers)
    assert answer.status_code == 400
    assert stored(rt) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", None), ("id", ""), ("id", "evt_" + "x" * 300), ("type", "t" * 101), ("type", 7)],
)
def test_a_signed_event_with_an_absurd_id_or_type_was_stored_as_it_came(
    rt, counted_app, field, value
):
    body, headers = delivery(rt, 9, **{field: value})
    answer = counted_app.test_client().post("/webhooks/stripe", data=body, headers=headers)
    assert answer.status_code == 400
    assert stored(rt) == 0


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount_total": -50000}, "the event's amount_total is not a plausible amount: -50000"),
        ({"amount_total": 10**25}, "the event's amount_total is not a plausible amount"),
        ({"amount_total": "lots"}, "the event's amount_total is not an amount: 'lots'"),
        ({"currency": "zzz"}, "the event's currency is not one we know: 'zzz'"),
        ({"metadata": {"arbridge_company": "abc"}}, "the event names company 'abc', not an id"),
    ],
)
def test_a_signed_session_with_an_absurd_amount_was_recorded_or_failed_with_a_traceback(
    rt, counted_app, demo_company, change, reason, caplog
):
    session = {
        "id": "cs_absurd",
        "object": "checkout.session",
        "payment_intent": "pi_absurd",
        "payment_status": "paid",
        "amount_total": 50000,
        "currency": "usd",
        "metadata": {"arbridge_company": str(demo_company.id), "arbridge_invoices": "1"},
        **change,
    }
    body, headers = delivery(rt, 10, data={"object": session})
    assert (
        counted_app.test_client().post("/webhooks/stripe", data=body, headers=headers).status_code
        == 200
    )
    with caplog.at_level(logging.ERROR):
        drain(rt)
    with rt.sessions() as s:
        event = s.scalar(select(WebhookEvent))
        assert event.status == "failed" and event.last_error.startswith(reason), event.last_error
        assert s.scalar(select(func.count()).select_from(CollectedPayment)) == 0
    assert "Traceback" not in caplog.text and reason in caplog.text
