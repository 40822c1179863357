"""Text messages, the pure rules: a phone number read into E.164 with the customer's country,
how long a text is in segments (GSM-7 or UCS-2), when one may go (08:00-21:00 where the
recipient is, inside the business's own sending window), and what a reply means (STOP, START).

Pure: strings, dates and the policy in, decisions out; nothing here sends or reads the clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from phonenumbers import timezone as phone_timezones

from arbridge.collections.reminder_policy import MAX_SMS_TEMPLATE, ReminderPolicy
from arbridge.collections.reminders import send_at, zone
from arbridge.collections.templates import SAMPLE_FIELDS, TemplateProblem, render_text
from arbridge.wording import counted

# Whatever the business's window says, no text before 08:00 or from 21:00 where the recipient
# is (the TCPA's 8 a.m.-9 p.m. rule, applied everywhere).
SMS_EARLIEST = 8
SMS_LATEST = 21

# The wording an SMS step sends unless the owner writes their own (reminders settings).
DEFAULT_SMS_TEMPLATE = "{{ business_name }}: {{ total_due }} is due. Pay here: {{ statement_link }}"
OPT_OUT_LINE = " Reply STOP to opt out."
MAX_TEMPLATE = MAX_SMS_TEMPLATE

# Twilio's default opt-out, opt-in and help keywords: a reply that is one of them, alone
# (case-insensitive, surrounding spaces ignored). Twilio answers them itself on a long code;
# arbridge records them so nothing more goes to that number.
# https://help.twilio.com/articles/223134027 (Twilio support for opt-out keywords)
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})

# The GSM 03.38 default alphabet, and its extension table (each of those costs two septets).
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsLength:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    per_segment: int  # what each segment holds at this length

    def describe(self) -> str:
        return (
            f"{counted(self.characters, 'character')}, {counted(self.segments, 'segment')} "
            f"({self.encoding}, {self.per_segment} per segment)"
        )


def sms_length(text: str) -> SmsLength:
    """Characters and segments as a carrier counts them: GSM-7 when every character is in the
    GSM alphabet (160 in one segment, 153 each when split), UCS-2 otherwise (70, or 67 each)."""
    if all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in text):
        units = sum(2 if c in _GSM7_EXTENDED else 1 for c in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    if units <= single:
        return SmsLength(encoding, len(text), units, 1 if units else 0, single)
    return SmsLength(encoding, len(text), units, math.ceil(units / multi), multi)


@dataclass(frozen=True)
class Phone:
    e164: str | None
    problem: str | None = None  # why no text can go to it, for the owner


def parse_phone(raw: str | None, country: str | None) -> Phone:
    """The number in E.164, read in `country` (ISO alpha-2) unless it carries its +code; or why
    it cannot take a text."""
    if not raw or not raw.strip():
        return Phone(None, "no phone number")
    region = (country or "").upper() or None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        where = f" in {region}" if region else " (no country to read it in)"
        return Phone(None, f"the phone number {raw!r} cannot be read{where}")
    if not phonenumbers.is_valid_number(number):
        return Phone(None, f"the phone number {raw!r} is not a valid number")
    if phonenumbers.number_type(number) in (
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.PREMIUM_RATE,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.PAGER,
    ):
        return Phone(None, f"the phone number {raw!r} is a landline or service number")
    return Phone(phonenumbers.format_number(number, PhoneNumberFormat.E164))


def recipient_zone(customer_timezone: str | None, e164: str | None, fallback: str) -> ZoneInfo:
    """Where the recipient is: the customer's own timezone, else the number's when it has only
    one (+1 415: Los Angeles; +1 as a whole spans many), else the business's."""
    if customer_timezone:
        return zone(customer_timezone, fallback)
    if e164:
        try:
            zones = phone_timezones.time_zones_for_number(phonenumbers.parse(e164))
        except phonenumbers.NumberParseException:
            zones = ()
        if len(zones) == 1 and zones[0] != phone_timezones.UNKNOWN_TIMEZONE:
            return zone(zones[0], fallback)
    return zone(None, fallback)


def sms_window(policy: ReminderPolicy) -> ReminderPolicy | None:
    """The business's sending window narrowed to 08:00-21:00; None when nothing is left."""
    start, end = max(policy.quiet_start, SMS_EARLIEST), min(policy.quiet_end, SMS_LATEST)
    if start >= end:
        return None
    return replace(policy, quiet_start=start, quiet_end=end)


def sms_send_at(now: datetime, timezone: ZoneInfo, policy: ReminderPolicy) -> datetime | None:
    """The first instant at or after `now` a text may go (None: the window leaves no time)."""
    window = sms_window(policy)
    return None if window is None else send_at(now, timezone, window)


def may_text_now(now: datetime, timezone: ZoneInfo, policy: ReminderPolicy) -> bool:
    return sms_send_at(now, timezone, policy) == now


def render_sms(source: str, fields: Mapping[str, Any]) -> str:
    """The text a step sends: the owner's wording (or the default) on one line, and how to
    opt out. Raises TemplateProblem when the wording does not render."""
    body = " ".join(render_text(source or DEFAULT_SMS_TEMPLATE, fields).split())
    return body + OPT_OUT_LINE


def sms_sample(source: str) -> tuple[str | None, SmsLength | None, str | None]:
    """The owner's wording rendered with sample fields, its length, or the problem."""
    try:
        body = render_sms(source, SAMPLE_FIELDS)
    except TemplateProblem as e:
        return None, None, str(e)
    return body, sms_length(body), None


def reply_keyword(body: str) -> str | None:
    """ "stop", "start" or "help" when the reply is one of Twilio's keywords; None otherwise."""
    word = " ".join(body.split()).upper().strip(" .!")
    if word in OPT_OUT_KEYWORDS or word == "STOP ALL":
        return "stop"
    if word in OPT_IN_KEYWORDS:
        return "start"
    if word in HELP_KEYWORDS:
        return "help"
    return None
