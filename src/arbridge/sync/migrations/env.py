"""Alembic environment: migrations run on the engine arbridge hands in, never on a config file."""

from alembic import context

from arbridge.sync.model import Base

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
