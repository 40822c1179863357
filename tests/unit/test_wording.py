"""Counts as a person reads them. Pages, emails, notices and commands wrote "1 account(s) need
your attention", "1 message(s) about 1 invoice(s)" and "moved forward 1 day(s)"."""

from __future__ import annotations

from arbridge.wording import counted, days_text, verb


def test_a_count_of_one_was_written_with_a_plural_in_brackets():
    assert counted(1, "invoice") == "1 invoice"
    assert counted(0, "invoice") == "0 invoices"
    assert counted(2, "reminder email") == "2 reminder emails"
    assert counted(3, "reply", "replies") == "3 replies"
    assert counted(1, "reply", "replies") == "1 reply"
    assert f"{counted(1, 'account')} {verb(1, 'needs', 'need')}" == "1 account needs"
    assert f"{counted(4, 'account')} {verb(4, 'needs', 'need')}" == "4 accounts need"
    assert days_text(1) == "1 day" and days_text(-1) == "-1 day" and days_text(30) == "30 days"
