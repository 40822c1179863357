"""Who may sign in to a company, as the settings page lists them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.sync.model import User


def company_users(s: Session, company_id: int) -> list[User]:
    return list(s.scalars(select(User).where(User.company_id == company_id).order_by(User.id)))
