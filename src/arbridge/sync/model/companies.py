"""Companies and the people who sign in to them, their jobs, their activity log, and
instance-wide facts."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from arbridge.sync.model.base import Base


class Company(Base):
    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    home_currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    country: Mapped[str] = mapped_column(String(2))
    sync_interval_minutes: Mapped[int] = mapped_column(Integer, default=15)
    collections_hour: Mapped[int] = mapped_column(Integer, default=9)
    # Owner-tuned policy (reminders, payments, plans), validated by the settings page.
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    # The logo on its PDF documents (PNG or JPEG bytes, at most 512 KB); loaded only when asked
    # for, so the company row every page reads stays small.
    logo: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)

    __table_args__ = (
        CheckConstraint(
            "collections_hour >= 0 AND collections_hour <= 23", name="collections_hour"
        ),
        CheckConstraint("sync_interval_minutes >= 1", name="sync_interval"),
    )


class User(Base):
    """A business owner (or staff member) who signs in to one company's pages."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(200))
    # The accounting provider's identity when the owner signs in with it (Intuit's sub, Xero's
    # user id). One person may own several companies (one Xero consent, several organisations):
    # a user row in each, with the same identity.
    identity_provider: Mapped[str | None] = mapped_column(String(20))
    identity_subject: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    last_sign_in_at: Mapped[datetime | None]
    # Stamped into the session cookie at sign-in; signing out (here or everywhere) bumps it, so
    # a copied cookie stops working at once instead of living out its 12 hours.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What this person may do (see ROLES): the company's first user is an owner; invited
    # people get the role their invitation names.
    role: Mapped[str] = mapped_column(String(20), default="owner", server_default="owner")

    __table_args__ = (
        UniqueConstraint("company_id", "email"),
        UniqueConstraint("company_id", "identity_provider", "identity_subject"),
    )


class Invitation(Base):
    """The owner's invitation to one more user: an emailed link that expires and works once.
    An existing company gains users only this way, never by someone signing in with the ledger."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(254))
    invited_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The role the invitee gets on accepting (one of ROLES).
    role: Mapped[str] = mapped_column(String(20), default="viewer", server_default="owner")


class SignInToken(Base):
    """A one-time sign-in link: only its SHA-256 is stored; it expires and is used once."""

    __tablename__ = "sign_in_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class CompanyJob(Base):
    """One row per (company, job): the schedule, and the row a worker locks while it runs the job."""

    __tablename__ = "company_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    job: Mapped[str] = mapped_column(String(40))
    next_run_at: Mapped[datetime]
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    last_worker: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    runs: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("company_id", "job"),
        Index("ix_company_jobs_due", "job", "next_run_at"),
    )


class InstanceMeta(Base):
    """Instance-wide facts, such as the encrypted canary that proves the keys are right."""

    __tablename__ = "instance_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class InsightVersion(Base):
    """How many times the data behind a company's insight (its invoices, payments, credit
    notes, allocations, customers, plans and settings) changed: bumped in the transaction that
    changes it (`sync.insight_cache`), read before an insight is computed."""

    __tablename__ = "insight_versions"

    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class InsightSnapshot(Base):
    """A company's insight (KPIs, forecast, flags, trends) as computed on `as_of` from the data
    at `version`: shown again while the version is the same, computed afresh after."""

    __tablename__ = "insight_snapshots"

    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    as_of: Mapped[date] = mapped_column(Date)
    version: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class Activity(Base):
    """The activity log the owner reads: what arbridge did, when, and on what basis."""

    __tablename__ = "activity"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    occurred_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(60))
    message: Mapped[str] = mapped_column(Text)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id", ondelete="SET NULL"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (Index("ix_activity_company_time", "company_id", "occurred_at"),)
