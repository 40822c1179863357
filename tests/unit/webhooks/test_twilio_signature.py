"""X-Twilio-Signature, known answers: base64(HMAC-SHA1(auth token, full URL + each form
parameter's name and value, sorted by name)), as Twilio documents it
(https://www.twilio.com/docs/usage/webhooks/webhooks-security), checked through Twilio's own
RequestValidator, and what our webhook reads out of a request."""

from __future__ import annotations

import pytest

from arbridge.errors import SignatureInvalid
from arbridge.webhooks.twilio import (
    MalformedTwilio,
    from_event,
    parse_twilio,
    twilio_event,
    verify_twilio_signature,
)

# Twilio's documentation example: the URL with its query, the form, and the auth token.
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
FORM = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+14158675310"),
    ("Digits", "1234"),
    ("From", "+14158675310"),
    ("To", "+18005551212"),
]
TOKEN = "12345"
# Worked by hand: HMAC-SHA1("12345", URL + "CallSidCA1234567890ABCDE" + "Caller+14158675310"
# + "Digits1234" + "From+14158675310" + "To+18005551212"), base64.
SIGNATURE = "GvWf1cFY/Q7PnoempGyD5oXAezc="


def test_the_documented_request_verifies():
    verify_twilio_signature(URL, FORM, SIGNATURE, TOKEN)
    verify_twilio_signature(URL, list(reversed(FORM)), SIGNATURE, TOKEN)  # order is Twilio's


def test_the_port_twilio_may_add_for_https_still_verifies():
    verify_twilio_signature(
        "https://mycompany.com:443/myapp.php?foo=1&bar=2", FORM, SIGNATURE, TOKEN
    )


@pytest.mark.parametrize(
    ("url", "form", "signature", "token"),
    [
        (URL, FORM, SIGNATURE, "54321"),  # another account's token
        (URL.replace("foo=1", "foo=2"), FORM, SIGNATURE, TOKEN),  # the query is signed
        ("http://mycompany.com/myapp.php?foo=1&bar=2", FORM, SIGNATURE, TOKEN),  # and the scheme
        (URL, [*FORM[:-1], ("To", "+18005551213")], SIGNATURE, TOKEN),  # and every field
        (URL, [*FORM, ("Body", "STOP")], SIGNATURE, TOKEN),  # nothing may be added
        (URL, FORM, None, TOKEN),
        (URL, FORM, "", TOKEN),
        (URL, FORM, SIGNATURE, None),  # no token configured: nothing is trusted
        (URL, FORM, SIGNATURE, ""),
    ],
)
def test_anything_else_is_refused(url, form, signature, token):
    with pytest.raises(SignatureInvalid):
        verify_twilio_signature(url, form, signature, token)


def test_a_reply_and_a_status_callback_are_told_apart():
    reply = parse_twilio(
        "https://a.example/webhooks/twilio",
        [
            ("AccountSid", "AC1"),
            ("MessageSid", "SM1"),
            ("From", "+1312"),
            ("Body", "STOP"),
            ("SmsStatus", "received"),
        ],
    )
    assert (reply.kind, reply.body, reply.key) == ("reply", "STOP", None)
    status = parse_twilio(
        "https://a.example/webhooks/twilio?key=sms%3Ac1%3A2026-11-24%3Ar9",
        [
            ("AccountSid", "AC1"),
            ("MessageSid", "SM2"),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30006"),
        ],
    )
    assert (status.kind, status.status, status.error_code, status.key) == (
        "status",
        "undelivered",
        "30006",
        "sms:c1:2026-11-24:r9",
    )


def test_a_reply_is_one_event_by_its_sid_and_a_status_one_per_status():
    reply = parse_twilio(
        "https://a.example/webhooks/twilio",
        [("AccountSid", "AC1"), ("MessageSid", "SM1"), ("From", "+1312"), ("Body", "STOP")],
    )
    status = parse_twilio(
        "https://a.example/webhooks/twilio?key=sms%3Ac1",
        [("AccountSid", "AC1"), ("MessageSid", "SM2"), ("MessageStatus", "delivered")],
    )
    mine = twilio_event(reply, (7,))
    assert (mine.event_id, mine.event_type, mine.tenant_id, mine.company_id) == (
        "AC1:SM1",
        "message.inbound",
        "AC1",
        7,
    )
    assert from_event(mine.payload) == (reply, (7,))
    install = twilio_event(status, None)
    assert (install.event_id, install.event_type, install.company_id) == (
        "AC1:SM2:delivered",
        "message.status",
        None,
    )
    assert from_event(install.payload) == (status, None)


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ([("MessageSid", "SM1"), ("From", "+1312"), ("Body", "hi")], "AccountSid"),
        ([("AccountSid", "AC1"), ("From", "+1312"), ("Body", "hi")], "MessageSid"),
        ([("AccountSid", "AC1"), ("MessageSid", "SM1"), ("SmsStatus", "received")], "From"),
        ([("AccountSid", "AC1"), ("MessageSid", "SM1 2"), ("MessageStatus", "sent")], "MessageSid"),
        (
            [("AccountSid", "AC1"), ("MessageSid", "SM1"), ("MessageStatus", "Sent!")],
            "MessageStatus",
        ),
        (
            [
                ("AccountSid", "AC1"),
                ("MessageSid", "SM1"),
                ("MessageStatus", "failed"),
                ("ErrorCode", "1e9"),
            ],
            "ErrorCode",
        ),
    ],
)
def test_a_form_that_is_not_twilio_s_names_the_field(form, field):
    with pytest.raises(MalformedTwilio, match=field):
        parse_twilio("https://a.example/webhooks/twilio?key=k", form)
