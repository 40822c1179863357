"""Twilio's webhooks go through the inbox: 'twilio' joins the providers a webhook delivery and a
webhook event may come from.

The CHECK constraints `ck_webhook_deliveries_delivery_provider` and
`ck_webhook_events_event_provider` (the model's Enum columns, non-native) are dropped and made
again with the wider list. SQLite cannot alter a constraint, so there batch mode copies the
table; PostgreSQL alters it in place.

Going back deletes Twilio's stored deliveries and events: revision 0025 has no place for them,
and its code acts on Twilio's requests as they arrive, never from the inbox.

Revision ID: 0026
Revises: 0025
"""

from alembic import op


revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

OLD = ("quickbooks", "xero", "stripe", "demo")
NEW = (*OLD, "twilio")
CHECKS = {
    "webhook_deliveries": "ck_webhook_deliveries_delivery_provider",
    "webhook_events": "ck_webhook_events_event_provider",
}


def _recheck(providers: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{p}'" for p in providers)
    # On SQLite batch mode copies each table; the migration environment turns foreign keys
    # off around it, so dropping the old webhook_deliveries no longer cascades to the events.
    for table, name in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(name), type_="check")
            batch.create_check_constraint(op.f(name), f"provider IN ({listed})")


def upgrade() -> None:
    _recheck(NEW)


def downgrade() -> None:
    op.execute("DELETE FROM webhook_events WHERE provider = 'twilio'")
    op.execute("DELETE FROM webhook_deliveries WHERE provider = 'twilio'")
    _recheck(OLD)
