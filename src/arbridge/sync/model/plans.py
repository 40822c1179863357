"""Installment plans (migration 0017): the plan a customer agreed to, the invoices it covers and
each installment with its charges' state.

A plan's statuses: "offered" (made, not agreed yet), "current" (agreed, first payment made or on
its way), "paused" (the owner stopped charges for now), "completed", "defaulted" (the last retry
of an installment failed) and "cancelled" (by the customer, the owner, or because its invoices
were voided or deleted). An installment is "scheduled", "processing" (a charge is out: a card's
answer, or a bank debit clearing), "paid", "failed" (waiting for its retry or the customer),
"dropped" (no longer needed: the balance fell) or "cancelled".
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from arbridge.sync.model.base import Base, _enum

PLAN_STATUSES = ("offered", "current", "paused", "completed", "defaulted", "cancelled")
INSTALLMENT_STATUSES = ("scheduled", "processing", "paid", "failed", "dropped", "cancelled")
LIVE_PLAN_STATUSES = ("current", "paused")  # plans whose invoices are on a plan


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    # The payment link it was chosen on, or made for (the owner's and the command line's
    # plans get one): the customer reaches the plan through payment links of its invoices.
    pay_token_id: Mapped[int | None] = mapped_column(
        ForeignKey("pay_tokens.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(_enum("plan_status", PLAN_STATUSES), default="offered")
    origin: Mapped[str] = mapped_column(String(20))  # "customer", "owner" or "cli"
    currency: Mapped[str] = mapped_column(String(3))
    balance_minor: Mapped[int] = mapped_column(BigInteger)  # what the invoices owed when made
    fee_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    installment_count: Mapped[int] = mapped_column(Integer)  # not counting the deposit
    every: Mapped[str] = mapped_column(String(10))  # "week", "fortnight" or "month"
    deposit_percent: Mapped[Decimal]
    start_on: Mapped[date] = mapped_column(Date)
    # The agreement shown, and its acceptance: the time, the address and the text's version.
    agreement_text: Mapped[str] = mapped_column(Text)
    agreement_version: Mapped[str] = mapped_column(String(64))
    accepted_at: Mapped[datetime | None]
    accepted_ip: Mapped[str | None] = mapped_column(String(64))
    accepted_user_agent: Mapped[str | None] = mapped_column(String(300))
    # The saved payment method later installments are charged to (Stripe's ids).
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    payment_method_id: Mapped[str | None] = mapped_column(String(255))
    payment_method_type: Mapped[str | None] = mapped_column(String(40))
    payment_method_label: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    offer_expires_at: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)

    installments: Mapped[list[PlanInstallment]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", order_by="PlanInstallment.number"
    )
    invoices: Mapped[list[PlanInvoice]] = relationship(cascade="all, delete-orphan")


class PlanInvoice(Base):
    """An invoice a plan covers (a statement link's plan covers several)."""

    __tablename__ = "plan_invoices"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    invoice_id: Mapped[int] = mapped_column(
        ForeignKey("invoices.id", ondelete="CASCADE"), index=True
    )

    __table_args__ = (UniqueConstraint("plan_id", "invoice_id"),)


class PlanInstallment(Base):
    __tablename__ = "plan_installments"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)  # 0 is the deposit
    due_on: Mapped[date] = mapped_column(Date)
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # what is charged (after any shrink)
    agreed_minor: Mapped[int] = mapped_column(BigInteger)  # as the customer agreed it
    status: Mapped[str] = mapped_column(
        _enum("installment_status", INSTALLMENT_STATUSES), default="scheduled"
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # charges started
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failed_on: Mapped[date | None] = mapped_column(Date)
    next_retry_on: Mapped[date | None] = mapped_column(Date)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    noticed_on: Mapped[date | None] = mapped_column(Date)
    paid_at: Mapped[datetime | None]

    plan: Mapped[Plan] = relationship(back_populates="installments")

    __table_args__ = (UniqueConstraint("plan_id", "number"),)
