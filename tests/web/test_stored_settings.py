"""Settings already in the database are read as carefully as a form: an older version, a restore
or a hand edit may have left a 400-digit number, a word or a list where a number belongs. The
pages keep working, say which setting could not be used, and nothing crashes."""

from __future__ import annotations

import logging

import pytest

from arbridge.collections.policy import policy
from arbridge.sync.db import transaction
from arbridge.sync.model import Company
from tests.web.conftest import parse

ABSURD = [10**30, -5, "9" * 400, "abc", 1e308, float("inf"), 2.5, True, [], {}]
REMINDER_KEYS = [
    "statement_link_days",
    "max_per_week",
    "quiet_start",
    "quiet_end",
    "max_sync_age_minutes",
    "statement_day",
    "weekdays",
    "sequences",
]
PAGES = ["/c/demo/settings", "/c/demo/", "/c/demo/reminders"]


@pytest.fixture
def crashes(caplog):
    caplog.set_level(logging.ERROR, logger="arbridge.web")
    return lambda: [r for r in caplog.records if "unhandled error" in r.getMessage()]


def _store(rt, company_id: int, section: str, key: str, value) -> None:
    with transaction(rt.sessions) as s:
        company = s.get(Company, company_id)
        stored = dict(company.settings or {})
        stored[section] = {**(stored.get(section) or {}), key: value}
        company.settings = stored


@pytest.mark.parametrize("key", REMINDER_KEYS)
def test_an_absurd_stored_reminder_setting_leaves_the_pages_working(
    owner_client, rt, demo_company, crashes, key
):
    for value in ABSURD:
        _store(rt, demo_company.id, "reminders", key, value)
        for path in PAGES:
            response = owner_client.get(path)
            assert response.status_code == 200, (key, value, path, response.status_code)
    assert not crashes()


def test_the_reminders_page_says_a_stored_setting_cannot_be_used(owner_client, rt, demo_company):
    _store(rt, demo_company.id, "reminders", "statement_link_days", "9" * 400)
    text = parse(owner_client.get("/c/demo/reminders").data).text
    assert "cannot be used" in text and "statement links must last" in text


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("reminders", "max_per_week"),
        ("payments", "discount_percent"),
        ("payments", "discount_days"),
        ("plans", "min_balance"),
        ("plans", "max_installments"),
    ],
)
def test_an_absurd_stored_payment_or_plan_setting_falls_back_and_is_named(
    owner_client, rt, demo_company, crashes, section, key
):
    for value in ABSURD:
        _store(rt, demo_company.id, section, key, value)
        response = owner_client.get("/c/demo/settings")
        assert response.status_code == 200, (key, value)
    _store(rt, demo_company.id, section, key, "9" * 400)
    text = parse(owner_client.get("/c/demo/settings").data).text
    assert "the default is used" in text
    assert not crashes()


def test_policy_replaces_each_unreadable_value_with_its_default_and_says_so():
    pol = policy(
        {
            "reminders": {"max_per_week": "9" * 400},
            "payments": {"discount_percent": "NaN", "discount_days": [1]},
            "plans": {"min_balance": "-1", "max_installments": 1e308},
        }
    )
    assert pol.max_reminders_per_week == 2
    assert pol.discount_percent is None and pol.discount_days is None
    assert str(pol.plan_min_balance) == "500.00" and pol.plan_max_installments == 3
    assert len(pol.problems) == 5
    assert policy({"payments": {"discount_percent": "2.5", "discount_days": 10}}).problems == ()
    assert policy("not a mapping").problems == ()  # type: ignore[arg-type]
