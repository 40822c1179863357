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

import sqlalchemy as sa
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
    # On SQLite batch mode copies webhook_deliveries and drops the old table, and a DROP TABLE
    # first deletes every row, which ON DELETE CASCADE carries to every webhook event (foreign
    # keys are on, and cannot be turned off inside the migration's transaction): the events are
    # kept aside and put back, ids and all.
    copied = op.get_bind().dialect.name == "sqlite"
    if copied:
        op.execute("CREATE TEMP TABLE webhook_events_kept AS SELECT * FROM webhook_events")
    for table, name in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(name), type_="check")
            batch.create_check_constraint(op.f(name), f"provider IN ({listed})")
    if copied:
        columns = ", ".join(
            c["name"] for c in sa.inspect(op.get_bind()).get_columns("webhook_events")
        )
        op.execute(
            f"INSERT INTO webhook_events ({columns}) SELECT {columns} FROM webhook_events_kept"  # noqa: S608 (the table's own column names)
        )
        op.execute("DROP TABLE webhook_events_kept")


def upgrade() -> None:
    _recheck(NEW)


def downgrade() -> None:
    op.execute("DELETE FROM webhook_events WHERE provider = 'twilio'")
    op.execute("DELETE FROM webhook_deliveries WHERE provider = 'twilio'")
    _recheck(OLD)
