"""The activity log the owner reads: one place that writes it."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from arbridge.clock import Clock
from arbridge.sync.model import Activity


def log_activity(
    session: Session, clock: Clock, company_id: int, kind: str, message: str, **data: Any
) -> None:
    session.add(
        Activity(
            company_id=company_id,
            occurred_at=clock.now(),
            kind=kind,
            message=message,
            invoice_id=data.pop("invoice_id", None),
            customer_id=data.pop("customer_id", None),
            data=data,
        )
    )
