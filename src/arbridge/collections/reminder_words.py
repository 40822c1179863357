"""Reminder steps, wordings and channels in the words a business owner uses.

The settings store short names (a step `after-45`, a wording `overdue_firm`, an escalation
`notify_owner`); nobody should have to read them. Every page, email and activity line that
names a step says it through here instead: "3 days before due: heads-up email". Pure.
"""

from __future__ import annotations

import re
from decimal import Decimal

from arbridge.collections.reminder_policy import Step

# The wordings arbridge ships, as a title (the wording picker) and as the adjective a step's
# description uses ("friendly email"). An owner's own wording is shown under its own name.
TEMPLATE_TITLES = {
    "upcoming": "Heads-up before the due date",
    "due_today": "Due today",
    "overdue_friendly": "Friendly reminder",
    "overdue": "Second reminder",
    "overdue_firm": "Firm reminder",
    "final_notice": "Final notice",
    "statement": "Monthly statement",
    "call_guide": "Call script",
}
_TEMPLATE_ADJECTIVES = {
    "upcoming": "heads-up",
    "due_today": "due-today",
    "overdue_friendly": "friendly",
    "overdue": "second-reminder",
    "overdue_firm": "firm",
    "final_notice": "final-notice",
    "statement": "statement",
}
CHANNEL_WORDS = {"email": "email", "call": "phone call", "sms": "text message"}
ESCALATION_WORDS = {
    "none": "Nothing more",
    "notify_owner": "Tell me",
    "agency": "Refer the account to a collection agency",
}
_ESCALATION_TAILS = {
    "notify_owner": "and you're told",
    "agency": "and the account is referred to a collection agency",
}
SEQUENCE_DEFAULT_TITLE = "Standard"
_KEY = re.compile(r"^(before|after)-(\d{1,3})$")


def template_title(name: str) -> str:
    """The wording's title for a picker: "Firm reminder"; an owner's own name, readably."""
    own = name.replace("_", " ").replace("-", " ").strip()
    return TEMPLATE_TITLES.get(name) or (own[:1].upper() + own[1:]) or "Wording"


def channel_words(channel: str) -> str:
    return CHANNEL_WORDS.get(channel, channel.replace("_", " "))


def sequence_title(name: str) -> str:
    return SEQUENCE_DEFAULT_TITLE if name == "default" else name


def when_in_words(offset_days: int) -> str:
    """-3 -> "3 days before due", 0 -> "on the due date", 1 -> "1 day after due"."""
    if offset_days == 0:
        return "on the due date"
    n = abs(offset_days)
    return f"{n} day{'s' if n != 1 else ''} {'before' if offset_days < 0 else 'after'} due"


def message_words(channel: str, template: str) -> str:
    """What the step sends: "friendly email", "phone call", "firm text message"."""
    if channel == "call":
        return "phone call"
    adjective = _TEMPLATE_ADJECTIVES.get(template) or template_title(template).lower()
    return f"{adjective} {channel_words(channel)}"


def step_in_words(step: Step) -> str:
    """A step as one readable line: "30 days after due: final-notice email, and you're told"."""
    when = when_in_words(step.offset_days)
    line = f"{when[:1].upper()}{when[1:]}: {message_words(step.channel, step.template)}"
    extras = []
    if step.min_balance is not None and step.min_balance > 0:
        extras.append(f"only when {_amount(step.min_balance)} or more is owed")
    tail = _ESCALATION_TAILS.get(step.escalation)
    if tail:
        extras.append(tail)
    return line + "".join(f", {e}" for e in extras)


def key_in_words(key: str) -> str | None:
    """A stored step key ("after-10", "due") as "10 days after due"; None for a key an older
    version or a hand-written setting chose, which says nothing about its day."""
    if key == "due":
        return when_in_words(0)
    m = _KEY.match(key)
    if not m:
        return None
    n = int(m.group(2))
    return when_in_words(n if m.group(1) == "after" else -n)


def _amount(value: Decimal) -> str:
    # In the invoice's own currency, which a step does not know: the number alone, grouped.
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


MAIL_KINDS = {
    "reminder": "Reminder",
    "sms_reminder": "Text message",
    "statement": "Statement",
    "owner": "Note to you",
    "test": "Test email",
    "receipt": "Receipt",
    "invitation": "Invitation",
    "sign_in_link": "Sign-in link",
}


def mail_kind(kind: str | None) -> str:
    """What kind of email it was, in words ("Note to you", not "owner")."""
    text = (kind or "email").replace("_", " ").replace("-", " ")
    return MAIL_KINDS.get(kind or "") or text[:1].upper() + text[1:]
