"""Xero's webhook signature and payload: known answers, the intent-to-receive check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from arbridge.errors import SignatureInvalid
from arbridge.webhooks.xero import MalformedWebhook, parse, verify

# A webhook key as Xero shows one (base64, 88 characters). Known answers computed independently:
# printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$KEY" -binary | base64
KEY = "LsTM4Gy/ip1Jf0JrkdhK5cjA9Hpx5ZFiYm9Ra7NmMHrv6PDtRr40uqWjWv+9tK0dRTLsAOw8dTgoFiAUZbyAAA=="
INTENT = (
    b'{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"SQTWLHHFYLKVUFGTDHRB"}'
)
INTENT_SIGNATURE = "nvUec+65htl2sPOOQ29JsAE4pV+gWqrHqlDXywETwKU="
INVOICE = (
    b'{"events":[{"resourceUrl":"https://api.xero.com/api.xro/2.0/Invoices/'
    b'7ef31b20-de17-4312-8382-412f869b1510","resourceId":"7ef31b20-de17-4312-8382-412f869b1510",'
    b'"tenantId":"aef86862-2015-4b6b-88bc-d89032cecc50","tenantType":"ORGANISATION",'
    b'"eventCategory":"INVOICE","eventType":"UPDATE","eventDateUtc":"2026-11-24T14:59:37.357"}],'
    b'"firstEventSequence":77,"lastEventSequence":77,"entropy":"FXNGWLCCGVANWHKILRUB"}'
)
INVOICE_SIGNATURE = "1BGqU6EtXqXcZUYKhNllPkBhfsIRmPZMQodOZhWkg58="


def test_intent_to_receive_with_a_good_signature_passes():
    verify({"x-xero-signature": INTENT_SIGNATURE}, INTENT, KEY)
    assert parse(INTENT) == []


def test_intent_to_receive_with_a_bad_signature_is_refused():
    """Xero sends the same empty payload mis-signed and expects a 401: SignatureInvalid."""
    bad = "Xq0SSwmyjLfYv1AVVSh9bIcy1VY2VX7YbjF1dKPbj9g="
    with pytest.raises(SignatureInvalid):
        verify({"x-xero-signature": bad}, INTENT, KEY)


def test_an_event_delivery_known_answer_and_header_case():
    verify({"X-Xero-Signature": INVOICE_SIGNATURE}, INVOICE, KEY)


@pytest.mark.parametrize(
    ("headers", "body", "key"),
    [
        ({"x-xero-signature": INVOICE_SIGNATURE}, INVOICE + b"\n", KEY),  # one byte more
        ({"x-xero-signature": INVOICE_SIGNATURE}, INVOICE.replace(b"77", b"78"), KEY),
        ({"x-xero-signature": INVOICE_SIGNATURE}, INVOICE, KEY[:-2] + "A="),
        ({"x-xero-signature": INTENT_SIGNATURE}, INVOICE, KEY),  # another body's signature
        ({"x-xero-signature": "not base64!"}, INVOICE, KEY),
        ({}, INVOICE, KEY),
        ({"x-xero-signature": INVOICE_SIGNATURE}, INVOICE, None),  # no key: never trusted
        ({"x-xero-signature": INVOICE_SIGNATURE}, INVOICE, ""),
    ],
)
def test_everything_else_is_refused(headers, body, key):
    with pytest.raises(SignatureInvalid):
        verify(headers, body, key)


def test_an_event_is_parsed_with_the_change_as_its_identity():
    [event] = parse(INVOICE)
    assert event.event_type == "INVOICE"
    assert event.tenant_id == "aef86862-2015-4b6b-88bc-d89032cecc50"
    assert event.payload["id"] == "7ef31b20-de17-4312-8382-412f869b1510"
    assert event.payload["operation"] == "UPDATE"
    assert event.occurred_at == datetime(2026, 11, 24, 14, 59, 37, 357000, tzinfo=UTC)
    assert event.event_id == (
        "aef86862-2015-4b6b-88bc-d89032cecc50:INVOICE:7ef31b20-de17-4312-8382-412f869b1510:"
        "UPDATE:2026-11-24T14:59:37.357"
    )
    assert parse(INVOICE) == [event]  # the same delivery again: the same identity


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"entropy":"x"}', b'{"events":[{"tenantId":"t"}]}']
)
def test_a_signed_body_that_is_not_xeros_payload_is_malformed(body):
    with pytest.raises(MalformedWebhook):
        parse(body)
