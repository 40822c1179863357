"""A contact's preferred channel decides how the sequence's reminder (email) steps reach them:
one who prefers texts gets them by text where the business can text (SMS set up, a usable
number, consent, no STOP), by email otherwise; one who prefers a call gets the email and a call
on the owner's list. The claim is the step's, whatever the channel (exactly once)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from arbridge.collections.reminder_policy import ReminderPolicy, ReminderSequence, Step
from arbridge.collections.reminders import (
    SMS_NOT_CONFIGURED,
    ContactFacts,
    CustomerFacts,
    InvoiceFacts,
    decide_day,
    describe_day,
    reminder_route,
)

EMAIL_STEP = ReminderSequence("default", (Step("after-3", 3, "email", "overdue_friendly"),))
POLICY = ReminderPolicy(sequences={"default": EMAIL_STEP})
TODAY = date(2026, 11, 24)
DANA = ContactFacts(
    5,
    "ap@harbor.example",
    name="Dana",
    is_primary=True,
    phone="+13125550142",
    sms_consent=True,
    preferred="sms",
)


def decide(*contacts: ContactFacts, sms: str | None = None, customer_tz: str | None = None):
    cust = CustomerFacts(1, "Harbor Foods", contacts, timezone=customer_tz)
    inv = InvoiceFacts(10, 1, "INV-10", date(2026, 11, 20), "USD", 10_000)
    return decide_day([cust], [inv], POLICY, TODAY, sms=sms).messages


def test_a_contact_who_prefers_texts_was_still_sent_the_email_step_by_email():
    (m,) = decide(DANA)
    assert (m.channel, m.held, m.contact.contact_id) == ("sms", None, 5)
    assert "Dana prefers texts" in (m.route or "")
    [line] = describe_day(
        decide_day(
            [CustomerFacts(1, "Harbor Foods", (DANA,))],
            [InvoiceFacts(10, 1, "INV-10", date(2026, 11, 20), "USD", 10_000)],
            POLICY,
            TODAY,
            sms=None,
        )
    )
    assert line.startswith("SEND text message to Harbor Foods <+13125550142>")


@pytest.mark.parametrize(
    ("changes", "sms", "why"),
    [
        ({}, SMS_NOT_CONFIGURED, "SMS is not configured"),
        ({"phone": None, "phone_problem": "the number is a landline"}, None, "landline"),
        ({"phone": None}, None, "no phone number to text"),
        ({"sms_consent": False}, None, "no recorded consent"),
        ({"sms_opted_out": True}, None, "replied STOP"),
        ({"sms_undeliverable": True}, None, "cannot take texts"),
    ],
)
def test_a_contact_who_prefers_texts_gets_email_when_texting_is_not_possible(changes, sms, why):
    (m,) = decide(DANA._replace(**changes), sms=sms)
    assert (m.channel, m.held, m.contact.email) == ("email", None, "ap@harbor.example")
    assert "prefers texts" in m.route and why in m.route and "by email instead" in m.route


def test_a_text_cap_holds_the_text_rather_than_switching_to_email():
    (m,) = decide(DANA._replace(texted_today=1))
    assert m.channel == "sms" and "already had a text today" in (m.held or "")


def test_a_contact_who_prefers_a_call_gets_the_email_and_a_call_on_the_list():
    (m,) = decide(DANA._replace(preferred="phone"))
    assert (m.channel, m.held, m.also_call) == ("email", None, True)
    assert "Dana prefers a call" in m.route


def test_a_contact_who_prefers_a_call_and_has_no_email_gets_the_call_alone():
    (m,) = decide(DANA._replace(preferred="phone", email=None))
    assert (m.channel, m.held, m.also_call) == ("call", None, False)


def test_email_preference_or_none_changes_nothing():
    for pref in ("email", None):
        (m,) = decide(DANA._replace(preferred=pref), sms=None)
        assert (m.channel, m.route, m.also_call) == ("email", None, False)


def test_the_primary_contact_s_preference_decides():
    other = ContactFacts(6, "boss@harbor.example", name="Sam", preferred="phone")
    (m,) = decide(other, DANA._replace(preferred="sms"), sms=None)
    assert m.channel == "sms" and m.contact.contact_id == 5


def test_the_route_is_shown_for_a_customer_without_anything_due():
    cust = CustomerFacts(1, "Harbor Foods", (DANA._replace(sms_consent=False),))
    route = reminder_route(cust, None)
    assert route.channel == "email" and "no recorded consent" in route.note


def test_a_contact_s_own_timezone_comes_before_the_customer_s():
    (m,) = decide(DANA._replace(preferred=None, timezone="Asia/Tokyo"), customer_tz="Europe/Paris")
    assert m.timezone == "Asia/Tokyo"
    (m,) = decide(DANA._replace(preferred=None), customer_tz="Europe/Paris")
    assert m.timezone == "Europe/Paris"
    assert ZoneInfo(m.timezone).utcoffset(datetime(2026, 11, 24, tzinfo=UTC)) is not None


def test_a_call_step_due_the_same_day_makes_the_only_call():
    both = ReminderSequence(
        "default",
        (Step("after-3", 3, "email", "overdue_friendly"), Step("after-4", 4, "call", "call")),
    )
    cust = CustomerFacts(1, "Harbor Foods", (DANA._replace(preferred="phone"),))
    invoices = [
        InvoiceFacts(10, 1, "INV-10", date(2026, 11, 21), "USD", 10_000),
        InvoiceFacts(11, 1, "INV-11", date(2026, 11, 20), "USD", 10_000),
    ]
    policy = ReminderPolicy(sequences={"default": both})
    messages = decide_day([cust], invoices, policy, TODAY, sms=None).messages
    assert sorted((m.channel, m.also_call) for m in messages) == [
        ("call", False),
        ("email", False),
    ]


def test_a_heads_up_before_the_due_date_brings_no_call():
    heads_up = ReminderSequence("default", (Step("before-3", -3, "email", "upcoming"),))
    cust = CustomerFacts(1, "Harbor Foods", (DANA._replace(preferred="phone"),))
    inv = InvoiceFacts(10, 1, "INV-10", date(2026, 11, 27), "USD", 10_000)
    policy = ReminderPolicy(sequences={"default": heads_up})
    (m,) = decide_day([cust], [inv], policy, TODAY, sms=None).messages
    assert (m.channel, m.also_call) == ("email", False)
    assert "a call once it is overdue" in m.route
