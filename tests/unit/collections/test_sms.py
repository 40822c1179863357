"""The pure rules of texts: numbers into E.164 by the customer's country, length in segments,
the hours a text may arrive (across timezones and daylight-saving changes), the replies that
mean STOP or START, and which texts a day's decisions send, hold or turn into email."""

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
)
from arbridge.collections.sms import (
    OPT_OUT_LINE,
    may_text_now,
    parse_phone,
    recipient_zone,
    render_sms,
    reply_keyword,
    sms_length,
    sms_send_at,
    sms_window,
)
from arbridge.collections.templates import SAMPLE_FIELDS, TemplateProblem

NEW_YORK, LONDON = ZoneInfo("America/New_York"), ZoneInfo("Europe/London")
EVERY_DAY = frozenset(range(7))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- numbers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "country", "e164"),
    [
        ("(312) 555-0142", "US", "+13125550142"),
        ("+1 312 555 0142", "GB", "+13125550142"),  # its own +code wins over the country
        ("07700 900123", "GB", None),  # Ofcom's drama range: not a real mobile
        ("07911 123456", "GB", "+447911123456"),
        ("0151 23456789", "DE", "+4915123456789"),  # a German mobile
    ],
)
def test_numbers_are_read_in_the_customers_country(raw, country, e164):
    assert parse_phone(raw, country).e164 == e164


@pytest.mark.parametrize(
    ("raw", "country", "why"),
    [
        (None, "US", "no phone number"),
        ("555 0105", "US", "is not a valid number"),
        ("call the office", "US", "cannot be read"),
        ("020 7946 0018", "GB", "landline"),
        ("(312) 555-0142", None, "cannot be read (no country"),
    ],
)
def test_an_unusable_number_says_why(raw, country, why):
    phone = parse_phone(raw, country)
    assert phone.e164 is None and why in (phone.problem or "")


# -- length -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),  # split: 153 a segment
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # the extension table: two septets each
        ("€" * 81, "GSM-7", 162, 2),
        ("é" * 160, "GSM-7", 160, 1),  # é is in the GSM alphabet
        ("ł" * 70, "UCS-2", 70, 1),  # ł is not: the whole text is UCS-2
        ("ł" * 71, "UCS-2", 71, 2),
        ("a" * 134 + "ł", "UCS-2", 135, 3),  # one character outside GSM-7 triples the cost
        ("😀" * 35, "UCS-2", 70, 1),  # outside the BMP: two UTF-16 units each
    ],
)
def test_segments_are_counted_as_carriers_count_them(text, encoding, units, segments):
    length = sms_length(text)
    assert (length.encoding, length.units, length.segments) == (encoding, units, segments)


def test_the_default_wording_fits_one_segment_with_the_opt_out_line():
    body = render_sms("", SAMPLE_FIELDS)
    assert body.endswith(OPT_OUT_LINE) and SAMPLE_FIELDS["statement_link"] in body
    assert sms_length(body).segments == 1


def test_wording_that_does_not_render_is_a_problem_for_the_owner():
    with pytest.raises(TemplateProblem):
        render_sms("{{ no_such_field }}", SAMPLE_FIELDS)


# -- hours ------------------------------------------------------------------------------------


def test_the_window_is_the_business_s_narrowed_to_8_to_21():
    assert sms_window(ReminderPolicy(quiet_start=6, quiet_end=23)).quiet_start == 8
    assert sms_window(ReminderPolicy(quiet_start=6, quiet_end=23)).quiet_end == 21
    assert sms_window(ReminderPolicy(quiet_start=9, quiet_end=17)).quiet_start == 9
    assert sms_window(ReminderPolicy(quiet_start=21, quiet_end=24)) is None
    assert sms_window(ReminderPolicy(quiet_start=0, quiet_end=8)) is None


def test_texts_wait_for_8_o_clock_where_the_recipient_is():
    policy = ReminderPolicy(quiet_start=0, quiet_end=24, weekdays=EVERY_DAY)
    # 12:00 UTC is 07:00 in New York (EST) and 12:00 in London.
    now = utc(2026, 11, 24, 12)
    assert sms_send_at(now, NEW_YORK, policy) == utc(2026, 11, 24, 13)  # 08:00 EST
    assert sms_send_at(now, LONDON, policy) == now
    # 21:30 in London: tomorrow at 08:00.
    assert sms_send_at(utc(2026, 11, 24, 21, 30), LONDON, policy) == utc(2026, 11, 25, 8)
    assert not may_text_now(utc(2026, 11, 24, 21), LONDON, policy)  # 21:00 is already too late
    assert may_text_now(utc(2026, 11, 24, 20, 59), LONDON, policy)


def test_quiet_hours_hold_across_the_daylight_saving_changes():
    policy = ReminderPolicy(quiet_start=0, quiet_end=24, weekdays=EVERY_DAY)
    # New York springs forward on 2026-03-08: 08:00 EDT is 12:00 UTC (13:00 the day before).
    assert sms_send_at(utc(2026, 3, 7, 14), NEW_YORK, policy) == utc(2026, 3, 7, 14)
    assert sms_send_at(utc(2026, 3, 8, 11, 30), NEW_YORK, policy) == utc(2026, 3, 8, 12)
    assert sms_send_at(utc(2026, 3, 7, 12, 30), NEW_YORK, policy) == utc(2026, 3, 7, 13)
    # ...and falls back on 2026-11-01: 21:00 EST is 02:00 UTC the next day.
    assert may_text_now(utc(2026, 11, 2, 1, 59), NEW_YORK, policy)
    assert not may_text_now(utc(2026, 11, 1, 1, 0), NEW_YORK, policy)  # 21:00 EDT on Oct 31
    # London's clocks go back on 2026-10-25: 08:00 GMT is 08:00 UTC, the day before 07:00 UTC.
    assert sms_send_at(utc(2026, 10, 24, 6), LONDON, policy) == utc(2026, 10, 24, 7)
    assert sms_send_at(utc(2026, 10, 25, 6), LONDON, policy) == utc(2026, 10, 25, 8)


def test_the_business_s_weekdays_apply_to_texts_too():
    policy = ReminderPolicy(quiet_start=9, quiet_end=17)  # Monday to Friday
    saturday_noon = datetime(2026, 11, 28, 12, tzinfo=NEW_YORK)
    assert sms_send_at(saturday_noon, NEW_YORK, policy) == datetime(
        2026, 11, 30, 9, tzinfo=NEW_YORK
    )


def test_the_recipient_s_zone_is_the_customer_s_else_the_number_s_else_the_business_s():
    assert recipient_zone("Europe/Paris", "+14155550100", "UTC").key == "Europe/Paris"
    assert recipient_zone(None, "+14155552671", "UTC").key == "America/Los_Angeles"
    assert recipient_zone(None, "+33612345678", "America/Chicago").key == "Europe/Paris"
    # A British mobile may be in Jersey, Guernsey or the Isle of Man: the business's zone.
    assert recipient_zone(None, "+447911123456", "America/Chicago").key == "America/Chicago"
    assert recipient_zone(None, None, "America/Chicago").key == "America/Chicago"


# -- replies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("STOP", "stop"),
        (" stop ", "stop"),
        ("Unsubscribe", "stop"),
        ("stop all", "stop"),
        ("QUIT.", "stop"),
        ("cancel", "stop"),
        ("START", "start"),
        ("unstop", "start"),
        ("yes", "start"),
        ("HELP", "help"),
        ("please stop texting me", None),  # not the keyword alone: the owner reads it
        ("Paid it yesterday", None),
    ],
)
def test_twilio_s_keywords_alone_mean_stop_start_or_help(body, keyword):
    assert reply_keyword(body) == keyword


# -- the day's decisions ----------------------------------------------------------------------

TEXT_STEP = ReminderSequence("default", (Step("after-3", 3, "sms", "overdue_friendly"),))
POLICY = ReminderPolicy(sequences={"default": TEXT_STEP})
TODAY = date(2026, 11, 24)


def decide(contact: ContactFacts, sms: str | None = None, policy: ReminderPolicy = POLICY):
    cust = CustomerFacts(1, "Harbor Foods", (contact,))
    inv = InvoiceFacts(10, 1, "INV-10", date(2026, 11, 20), "USD", 10_000)
    return decide_day([cust], [inv], policy, TODAY, sms=sms).messages


GOOD = ContactFacts(5, "ap@harbor.example", phone="+13125550142", sms_consent=True)


def test_a_text_goes_to_a_consenting_contact_with_a_usable_number():
    (m,) = decide(GOOD)
    assert (m.channel, m.held, m.contact.phone) == ("sms", None, "+13125550142")


@pytest.mark.parametrize(
    ("changes", "sms", "why"),
    [
        ({}, SMS_NOT_CONFIGURED, "SMS is not configured"),
        (
            {"phone": None, "phone_problem": "the phone number '555' is not a valid number"},
            None,
            "is not a valid number",
        ),
        ({"phone": None}, None, "no phone number to text"),
        ({"sms_consent": False}, None, "no recorded consent"),
        ({"sms_opted_out": True}, None, "replied STOP"),
        ({"texted_today": 1}, None, "already had a text today"),
        ({"sent_last_7_days": 2}, None, "weekly limit of 2"),  # shared with emails
    ],
)
def test_a_text_is_held_with_a_reason_the_owner_sees(changes, sms, why):

    (m,) = decide(GOOD._replace(**changes), sms=sms)
    assert m.channel == "sms" and why in (m.held or "")


def test_a_number_the_carrier_refused_turns_the_step_into_an_email():

    (m,) = decide(GOOD._replace(sms_undeliverable=True))
    assert (m.channel, m.held, m.contact.email) == ("email", None, "ap@harbor.example")
