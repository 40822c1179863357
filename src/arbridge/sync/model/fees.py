"""Late fees and interest (migration 0018): each assessment charged on an invoice, once per
(invoice, kind, period), and the ledger invoice it became."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from arbridge.sync.model.base import Base, _enum
from arbridge.sync.model.receivables import Invoice

# "plan_fee": an installment plan's fee, charged once as its own ledger invoice when the plan
# starts (services.payments.plan_runs), through the same write and waiver as late fees.
FEE_KINDS = ("fee", "interest", "compensation", "plan_fee")
# "queued": its ledger invoice is on its way (the outbox row); "posted": the ledger has it
# (`ledger_ref`); "failed": the ledger refused it (the outbox row says why); "waived": the owner
# waived it, and its ledger invoice is voided (or never made).
ASSESSMENT_STATUSES = ("queued", "posted", "failed", "waived")


class LateFeeAssessment(Base):
    __tablename__ = "late_fee_assessments"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(
        ForeignKey("companies.id", ondelete="CASCADE"), index=True
    )
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(_enum("late_fee_kind", FEE_KINDS))
    period: Mapped[str] = mapped_column(String(7))  # "once" or "2026-11"
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(String(200))  # the ledger invoice's line
    basis: Mapped[str] = mapped_column(Text)  # how it was worked out, in words
    assessed_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(
        _enum("late_fee_status", ASSESSMENT_STATUSES), default="queued"
    )
    outbox_key: Mapped[str] = mapped_column(String(128))
    # The ledger invoice made for it (its id there), once written.
    ledger_ref: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    waived_at: Mapped[datetime | None]
    waived_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    invoice: Mapped[Invoice] = relationship()

    __table_args__ = (
        UniqueConstraint("invoice_id", "kind", "period"),
        Index("ix_late_fee_assessments_ledger_ref", "company_id", "ledger_ref"),
    )
