"""Which reminder sequence a customer follows: the company's default or one the owner named."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.errors import ArbridgeError
from arbridge.sync.activity import log_activity
from arbridge.sync.model import Company, Customer, CustomerReminderSettings

DEFAULT = "default"


class UnknownSequence(ArbridgeError):
    """The owner named a sequence the company does not have."""


def follow_sequence(
    session: Session, clock: Clock, company: Company, customer: Customer, name: str | None
) -> str:
    """Have the customer follow the named sequence (None or "default": the company's default);
    returns the name the owner reads. The caller commits."""
    sequences = ((company.settings or {}).get("reminders") or {}).get("sequences") or {}
    if name not in (None, DEFAULT) and name not in sequences:
        raise UnknownSequence(f"There is no sequence called {name!r}.")
    pref = session.scalar(
        select(CustomerReminderSettings).where(CustomerReminderSettings.customer_id == customer.id)
    )
    if pref is None:
        pref = CustomerReminderSettings(company_id=company.id, customer_id=customer.id)
        session.add(pref)
    pref.sequence = None if name == DEFAULT else name
    shown = name or DEFAULT
    log_activity(
        session,
        clock,
        company.id,
        "settings.changed",
        f"{customer.name} now follows the {shown} sequence",
        customer_id=customer.id,
    )
    return shown
