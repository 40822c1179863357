from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from arbridge.sync import db
from arbridge.sync.model import Base


def test_migrations_match_the_model(rt):
    with rt.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata
        )
    assert diff == []
    assert db.current_revision(rt.engine) == db.head_revision()
