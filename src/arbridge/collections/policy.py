"""The owner's collections policy: defaults, and the settings page's stored choices over them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

DEFAULTS: dict[str, dict[str, Any]] = {
    "reminders": {"enabled": True, "max_per_week": 2},
    "payments": {
        "accept_card": True,
        "accept_ach": True,
        "discount_percent": None,
        "discount_days": None,
    },
    "plans": {"enabled": False, "min_balance": "500.00", "max_installments": 3},
}


@dataclass(frozen=True)
class Policy:
    reminders_enabled: bool
    max_reminders_per_week: int
    accept_card: bool
    accept_ach: bool
    discount_percent: Decimal | None
    discount_days: int | None
    plans_enabled: bool
    plan_min_balance: Decimal
    plan_max_installments: int


def merged(stored: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    stored = stored or {}
    return {
        section: {**values, **(stored.get(section) or {})} for section, values in DEFAULTS.items()
    }


def policy(stored: Mapping[str, Any] | None) -> Policy:
    s = merged(stored)
    r, p, pl = s["reminders"], s["payments"], s["plans"]
    return Policy(
        reminders_enabled=bool(r["enabled"]),
        max_reminders_per_week=int(r["max_per_week"]),
        accept_card=bool(p["accept_card"]),
        accept_ach=bool(p["accept_ach"]),
        discount_percent=Decimal(p["discount_percent"]) if p["discount_percent"] else None,
        discount_days=int(p["discount_days"]) if p["discount_days"] else None,
        plans_enabled=bool(pl["enabled"]),
        plan_min_balance=Decimal(pl["min_balance"]),
        plan_max_installments=int(pl["max_installments"]),
    )
