"""Steps, wordings and channels in the words a business owner reads: no step keys, wording keys
or escalation keys on any page or email."""

from __future__ import annotations

from decimal import Decimal

import pytest

from arbridge.collections.reminder_policy import DEFAULT_STEPS, Step
from arbridge.collections.reminder_words import (
    ESCALATION_WORDS,
    key_in_words,
    mail_kind,
    message_words,
    sequence_title,
    step_in_words,
    template_title,
    when_in_words,
)


def test_the_default_sequence_reads_as_plain_sentences():
    assert [step_in_words(s) for s in DEFAULT_STEPS] == [
        "3 days before due: heads-up email",
        "On the due date: due-today email",
        "3 days after due: friendly email",
        "10 days after due: second-reminder email",
        "20 days after due: firm email",
        "30 days after due: final-notice email, and you're told",
        "45 days after due: phone call, and you're told",
    ]


@pytest.mark.parametrize(
    ("offset", "words"),
    [
        (-1, "1 day before due"),
        (-14, "14 days before due"),
        (0, "on the due date"),
        (1, "1 day after due"),
        (365, "365 days after due"),
    ],
)
def test_when_a_step_falls(offset, words):
    assert when_in_words(offset) == words


def test_a_minimum_balance_and_an_agency_referral_are_said_too():
    step = Step("after-60", 60, "email", "final_notice", Decimal("2500.00"), "agency")
    assert step_in_words(step) == (
        "60 days after due: final-notice email, only when 2,500 or more is owed, "
        "and the account is referred to a collection agency"
    )
    assert "only when 0.5 or more" in step_in_words(Step("k", 5, min_balance=Decimal("0.50")))


def test_a_text_message_step_and_the_owners_own_wording_read_as_words():
    assert message_words("sms", "overdue_friendly") == "friendly text message"
    assert message_words("email", "polite_nudge-v2") == "polite nudge v2 email"
    assert template_title("polite_nudge") == "Polite nudge"
    assert template_title("overdue_firm") == "Firm reminder"
    assert template_title("call_guide") == "Call script"


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("after-45", "45 days after due"),
        ("before-3", "3 days before due"),
        ("due", "on the due date"),
        ("after-1", "1 day after due"),
        ("my-own-step", None),
    ],
)
def test_stored_step_keys_are_read_back_as_words(key, words):
    assert key_in_words(key) == words


def test_no_internal_name_survives_into_the_words():
    shown = [step_in_words(s) for s in DEFAULT_STEPS] + list(ESCALATION_WORDS.values())
    for text in shown:
        assert "_" not in text and "after-" not in text and "before-" not in text, text
    assert sequence_title("default") == "Standard" and sequence_title("gentle") == "gentle"


def test_kinds_of_email_read_as_words():
    assert mail_kind("owner") == "Note to you" and mail_kind("sign_in_link") == "Sign-in link"
    assert mail_kind("payment_failed") == "Payment failed" and mail_kind(None) == "Email"
