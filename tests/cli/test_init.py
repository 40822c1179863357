"""`arbridge init`: the database and the instance secret file, once."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from arbridge.crypto import Keyring
from arbridge.sync.db import head_revision, transaction
from arbridge.sync.model import Company
from arbridge.sync.store import create_company, get_company
from tests.cli.conftest import Instance
from tests.conftest import ON_POSTGRES


@pytest.mark.subprocess
def test_init_creates_the_database_and_a_private_secret_file(fresh: Instance):
    out = fresh.ok("init")
    assert f"Database ready at migration {head_revision()}." in out
    assert str(fresh.secret_file) in out

    assert fresh.secret_mode() == 0o600
    secrets = fresh.secrets()
    assert len(secrets["secret_key"]) >= 32
    assert len(secrets["encryption_keys"]) == 1
    Keyring(secrets["encryption_keys"])  # a usable Fernet key
    if not ON_POSTGRES:
        assert (fresh.path / "arbridge.db").is_file()

    with fresh.runtime() as rt:  # opens only on an initialised instance with the right keys
        assert rt.keyring is not None
        assert rt.settings.secret_key == secrets["secret_key"]
        tables = set(inspect(rt.engine).get_table_names())
    assert {"companies", "company_jobs", "invoices", "alembic_version"} <= tables


def test_a_second_init_says_already_initialised_exits_0_and_changes_nothing(fresh: Instance):
    fresh.ok("init")
    with fresh.runtime() as rt, transaction(rt.sessions) as s:
        create_company(
            s,
            rt.clock,
            name="Kept Ltd",
            slug="kept",
            home_currency="USD",
            timezone="UTC",
            country="US",
            owner_email="owner@kept.example",
        )
    secret_bytes = fresh.secret_file.read_bytes()

    result = fresh.run("init")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stderr == ""
    assert "already initialised" in result.stdout
    assert "nothing was changed" in result.stdout

    assert fresh.secret_file.read_bytes() == secret_bytes
    assert fresh.secret_mode() == 0o600
    with fresh.runtime() as rt, rt.sessions() as s:
        assert get_company(s, "kept").name == "Kept Ltd"
        assert s.query(Company).count() == 1

    # --upgrade on a current database is the way to run init again: it keeps both.
    assert "Database ready" in fresh.ok("init", "--upgrade")
    assert fresh.secret_file.read_bytes() == secret_bytes
    with fresh.runtime() as rt, rt.sessions() as s:
        assert get_company(s, "kept").name == "Kept Ltd"
