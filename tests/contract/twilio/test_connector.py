"""The Twilio connector against Twilio faked at the HTTP level (payloads shaped like the
Message resource and Twilio's error JSON): what it sends, and every answer mapped to ours."""

from __future__ import annotations

from datetime import timedelta

import pytest
import responses

from arbridge.clock import FixedClock
from arbridge.connectors.twilio import (
    SmsConfigError,
    SmsMaybeSent,
    SmsUndeliverable,
    TwilioAccount,
    TwilioSms,
)
from arbridge.errors import Rejected, Transient
from tests.conftest import NOW
from tests.twilio_http_fake import API, FROM, SERVICE_SID, FakeTwilio

TO = "+13125550142"


@pytest.fixture
def twilio():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeTwilio(FixedClock(NOW)).install(rsps)


def client(fake: FakeTwilio, **kw) -> TwilioSms:
    return TwilioSms(TwilioAccount(fake.account_sid, fake.auth_token, api_base=API, **kw))


def test_a_text_goes_from_the_number_with_its_status_callback(twilio):
    sent = client(twilio, from_number=FROM).send(TO, "Pay here", "https://a.example/cb?key=k1")
    assert twilio.creates == [
        {
            "To": TO,
            "Body": "Pay here",
            "From": FROM,
            "StatusCallback": "https://a.example/cb?key=k1",
        }
    ]
    assert sent.sid.startswith("SM") and sent.status == "queued" and sent.segments == 1


def test_a_messaging_service_sends_instead_of_a_number(twilio):
    sent = client(twilio, messaging_service_sid=SERVICE_SID).send(TO, "Hi", None)
    assert twilio.creates[0]["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in twilio.creates[0] and sent.status == "accepted"


@pytest.mark.parametrize(
    ("outcome", "error"),
    [
        (21211, SmsUndeliverable),  # an invalid number: never again
        (21610, SmsUndeliverable),  # the recipient texted STOP to this sender
        (20003, SmsConfigError),  # bad credentials: the owner checks the settings
        ("server_error", Transient),
        ("lost", Transient),  # the request went out and the answer did not come back
        (21602, Rejected),  # any other refusal of this one text
    ],
)
def test_each_answer_maps_to_one_of_our_errors(twilio, outcome, error):
    twilio.next_outcomes = [outcome]
    with pytest.raises(error):
        client(twilio, from_number=FROM).send(TO, "Hi", None)


def test_find_picks_the_text_by_body_and_time_among_those_to_the_number(twilio):
    c = client(twilio, from_number=FROM)
    c.send(TO, "older text", None)
    c.send("+13125550100", "Pay here", None)
    twilio.next_outcomes = ["lost"]
    with pytest.raises(Transient):
        c.send(TO, "Pay here", None)
    found = c.find(TO, "Pay here", NOW)
    assert found is not None and found.sid == twilio.messages[0]["sid"]
    assert c.find(TO, "Pay here", NOW + timedelta(hours=1)) is None  # sent before we tried
    assert c.find(TO, "something else", NOW) is None


def test_a_lookup_that_fails_is_maybe_sent(twilio):
    twilio.list_fails = True
    with pytest.raises(SmsMaybeSent):
        client(twilio, from_number=FROM).find(TO, "Pay here", NOW)
