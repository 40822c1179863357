"""Installment plans: the plans, the invoices each covers and its installments; each collected
payment's installment (when it is one); and the owner's per-customer choice about plans.

Revision ID: 0017
Revises: 0016
"""

from alembic import op
import sqlalchemy as sa
import arbridge.sync.model


revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("pay_token_id", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "offered",
                "current",
                "paused",
                "completed",
                "defaulted",
                "cancelled",
                name="plan_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("installment_count", sa.Integer(), nullable=False),
        sa.Column("every", sa.String(length=10), nullable=False),
        sa.Column(
            "deposit_percent", arbridge.sync.model.base.DecimalText(length=40), nullable=False
        ),
        sa.Column("start_on", sa.Date(), nullable=False),
        sa.Column("agreement_text", sa.Text(), nullable=False),
        sa.Column("agreement_version", sa.String(length=64), nullable=False),
        sa.Column(
            "accepted_at", arbridge.sync.model.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("accepted_ip", sa.String(length=64), nullable=True),
        sa.Column("accepted_user_agent", sa.String(length=300), nullable=True),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("payment_method_id", sa.String(length=255), nullable=True),
        sa.Column("payment_method_type", sa.String(length=40), nullable=True),
        sa.Column("payment_method_label", sa.String(length=80), nullable=True),
        sa.Column(
            "created_at", arbridge.sync.model.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", arbridge.sync.model.base.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "offer_expires_at", arbridge.sync.model.base.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("paused_at", arbridge.sync.model.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", arbridge.sync.model.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_plans_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_plans_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["pay_token_id"],
            ["pay_tokens.id"],
            name=op.f("fk_plans_pay_token_id_pay_tokens"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
    )
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_plans_company_id"), ["company_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_plans_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "plan_installments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("agreed_minor", sa.BigInteger(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "scheduled",
                "processing",
                "paid",
                "failed",
                "dropped",
                "cancelled",
                name="installment_status",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failed_on", sa.Date(), nullable=True),
        sa.Column("next_retry_on", sa.Date(), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("noticed_on", sa.Date(), nullable=True),
        sa.Column("paid_at", arbridge.sync.model.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["plans.id"],
            name=op.f("fk_plan_installments_plan_id_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_installments")),
        sa.UniqueConstraint("plan_id", "number", name=op.f("uq_plan_installments_plan_id_number")),
    )
    with op.batch_alter_table("plan_installments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plan_installments_payment_intent_id"),
            ["payment_intent_id"],
            unique=False,
        )

    op.create_table(
        "plan_invoices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("invoice_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_plan_invoices_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["plans.id"],
            name=op.f("fk_plan_invoices_plan_id_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plan_invoices")),
        sa.UniqueConstraint(
            "plan_id", "invoice_id", name=op.f("uq_plan_invoices_plan_id_invoice_id")
        ),
    )
    with op.batch_alter_table("plan_invoices", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_plan_invoices_invoice_id"), ["invoice_id"], unique=False
        )

    with op.batch_alter_table("collected_payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan_installment_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_collected_payments_plan_installment_id"),
            ["plan_installment_id"],
            unique=False,
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_collected_payments_plan_installment_id_plan_installments"),
            "plan_installments",
            ["plan_installment_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("customer_reminder_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan_choice", sa.String(length=10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customer_reminder_settings", schema=None) as batch_op:
        batch_op.drop_column("plan_choice")

    with op.batch_alter_table("collected_payments", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_collected_payments_plan_installment_id_plan_installments"),
            type_="foreignkey",
        )
        batch_op.drop_index(batch_op.f("ix_collected_payments_plan_installment_id"))
        batch_op.drop_column("plan_installment_id")

    with op.batch_alter_table("plan_invoices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plan_invoices_invoice_id"))

    op.drop_table("plan_invoices")
    with op.batch_alter_table("plan_installments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plan_installments_payment_intent_id"))

    op.drop_table("plan_installments")
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_plans_customer_id"))
        batch_op.drop_index(batch_op.f("ix_plans_company_id"))

    op.drop_table("plans")
