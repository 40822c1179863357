"""Choosing a customer's reminder sequence is a use case of its own: no web client needed."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from arbridge.services.reminders.sequences import UnknownSequence, follow_sequence
from arbridge.sync.db import transaction
from arbridge.sync.model import Activity, Company, Customer, CustomerReminderSettings
from tests.integration.remind_support import Cust, Inv, build_world

HARBOR = Cust("HAR", "Harbor Bakery", "Alice", "alice@harbor.example")


def test_a_customer_follows_a_named_sequence_then_the_default_again(rt):
    world = build_world(rt, [HARBOR], [Inv("A", "HAR", 20, "100.00")])
    world.set_reminders(sequences={"gentle": [{"offset_days": 14, "template": "overdue"}]})
    for name, stored in (("gentle", "gentle"), ("default", None), (None, None)):
        with transaction(rt.sessions) as s:
            company = s.get(Company, world.company.id)
            customer = s.get(Customer, world.customer("HAR").id)
            assert follow_sequence(s, rt.clock, company, customer, name) == (name or "default")
        with rt.sessions() as s:
            assert s.scalar(select(CustomerReminderSettings.sequence)) == stored
            last = s.scalar(select(Activity.message).order_by(Activity.id.desc()))
            assert last == f"Harbor Bakery now follows the {name or 'default'} sequence"


def test_an_unknown_sequence_is_refused_and_changes_nothing(rt):
    world = build_world(rt, [HARBOR], [Inv("A", "HAR", 20, "100.00")])
    with transaction(rt.sessions) as s:
        company = s.get(Company, world.company.id)
        customer = s.get(Customer, world.customer("HAR").id)
        with pytest.raises(UnknownSequence, match="no sequence called 'brisk'"):
            follow_sequence(s, rt.clock, company, customer, "brisk")
    with rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(CustomerReminderSettings)) == 0
