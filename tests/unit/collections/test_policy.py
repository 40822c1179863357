from decimal import Decimal

from arbridge.collections.policy import merged, policy


def test_defaults_apply_where_nothing_is_stored():
    p = policy(None)
    assert p.reminders_enabled and p.accept_card and not p.plans_enabled
    assert p.discount_percent is None


def test_stored_choices_override_defaults_section_by_section():
    stored = {"payments": {"discount_percent": "2", "discount_days": 10}}
    p = policy(stored)
    assert p.discount_percent == Decimal(2) and p.discount_days == 10
    assert p.accept_card  # untouched default in the same section
    assert merged(stored)["reminders"] == merged(None)["reminders"]
