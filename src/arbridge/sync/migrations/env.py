"""Alembic environment: migrations run on the engine arbridge hands in, never on a config file."""

from alembic import context

from arbridge.sync.model import Base

config = context.config
engine = config.attributes["engine"]
sqlite = engine.dialect.name == "sqlite"

with engine.connect() as connection:
    if sqlite:
        # SQLite changes a table by copying it and dropping the old one; with foreign keys
        # enforced, that drop deletes (ON DELETE CASCADE) every row pointing at the old table:
        # 0009's copy of webhook_deliveries took every stored webhook event with it. SQLite's
        # own advice: foreign keys off for the schema change (the pragma only takes effect
        # outside a transaction), then check nothing dangles before committing.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    try:
        with connection.begin():
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            context.run_migrations()
            if sqlite:
                dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if dangling:
                    raise RuntimeError(f"the migration left rows pointing nowhere: {dangling[:5]}")
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
