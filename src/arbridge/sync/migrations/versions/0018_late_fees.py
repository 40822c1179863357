"""Late fees and interest: each assessment (unique per invoice, kind and period) with its ledger
invoice, and the owner's per-customer exemption.

Revision ID: 0018
Revises: 0017
"""

from alembic import op
import sqlalchemy as sa
import arbridge.sync.model


revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "late_fee_assessments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "fee",
                "interest",
                "compensation",
                "plan_fee",
                name="late_fee_kind",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("assessed_on", sa.Date(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "posted",
                "failed",
                "waived",
                name="late_fee_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("outbox_key", sa.String(length=128), nullable=False),
        sa.Column("ledger_ref", sa.String(length=255), nullable=True),
        sa.Column(
            "created_at", arbridge.sync.model.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("waived_at", arbridge.sync.model.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("waived_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_late_fee_assessments_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_late_fee_assessments_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_late_fee_assessments_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["waived_by"],
            ["users.id"],
            name=op.f("fk_late_fee_assessments_waived_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_late_fee_assessments")),
        sa.UniqueConstraint(
            "invoice_id",
            "kind",
            "period",
            name=op.f("uq_late_fee_assessments_invoice_id_kind_period"),
        ),
    )
    with op.batch_alter_table("late_fee_assessments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_late_fee_assessments_company_id"), ["company_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_late_fee_assessments_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            "ix_late_fee_assessments_ledger_ref", ["company_id", "ledger_ref"], unique=False
        )

    with op.batch_alter_table("customer_reminder_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("late_fees_exempt", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("customer_reminder_settings", schema=None) as batch_op:
        batch_op.drop_column("late_fees_exempt")

    with op.batch_alter_table("late_fee_assessments", schema=None) as batch_op:
        batch_op.drop_index("ix_late_fee_assessments_ledger_ref")
        batch_op.drop_index(batch_op.f("ix_late_fee_assessments_customer_id"))
        batch_op.drop_index(batch_op.f("ix_late_fee_assessments_company_id"))

    op.drop_table("late_fee_assessments")
