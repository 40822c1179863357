"""Stripe deliveries against several secrets: the one that signed says whose the event is."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from arbridge.connectors.stripe.simulated import sign
from arbridge.errors import SignatureInvalid
from arbridge.webhooks.stripe import MalformedEvent, signed_by, stripe_event

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
BODY = json.dumps(
    {"id": "evt_1", "type": "customer.created", "created": 1795532000, "data": {"object": {}}}
).encode()


def header(secret: str, at: datetime = NOW) -> str:
    return sign(BODY, secret, int(at.timestamp()))


def test_the_secret_that_signed_names_the_tag_and_later_ones_are_never_read():
    read = []

    def candidates():
        for secret, tag in [("whsec_a", "a"), ("whsec_b", "b"), ("whsec_c", "c")]:
            read.append(tag)
            yield secret, tag

    assert signed_by(BODY, header("whsec_b"), candidates(), NOW) == "b"
    assert read == ["a", "b"]


@pytest.mark.parametrize(
    ("given", "candidates"),
    [
        (header("whsec_x"), [("whsec_a", "a")]),
        (header("whsec_a"), []),
        (header("whsec_a"), [("", "empty")]),
        (header("whsec_a", datetime(2026, 11, 24, 14, 54, tzinfo=UTC)), [("whsec_a", "a")]),
        ("t=abc,v1=00", [("whsec_a", "a")]),
        (None, [("whsec_a", "a")]),
    ],
)
def test_forged_stale_or_unconfigured_is_refused(given, candidates):
    with pytest.raises(SignatureInvalid):
        signed_by(BODY, given, candidates, NOW)


@pytest.mark.parametrize(
    "created", [253402214400, 10**30, -1, 0, "1795532000", 1.7e9, True, None, [1]]
)
def test_an_absurd_created_time_is_refused(created):
    body = json.dumps(
        {"id": "evt_1", "type": "x", "created": created, "data": {"object": {}}}
    ).encode()
    with pytest.raises(MalformedEvent, match="created"):
        stripe_event(body, NOW)


def test_the_signing_account_wins_over_what_the_body_claims():
    body = json.dumps(
        {
            "id": "e",
            "type": "x",
            "created": 1795532000,
            "account": "acct_victim",
            "data": {"object": {}},
        }
    ).encode()
    assert stripe_event(body, NOW, tenant_id="acct_signer").tenant_id == "acct_signer"
    assert stripe_event(body, NOW).tenant_id == "acct_victim"  # Connect: the platform signed
