"""`arbridge rotate-keys`: every stored secret re-encrypted with the newest key."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from arbridge.crypto import Keyring, new_key
from arbridge.errors import KeyMismatch
from arbridge.sync.db import transaction
from arbridge.sync.model import Connection
from arbridge.sync.store import add_connection, create_company
from tests.cli.conftest import Instance, assert_one_sentence_error

CREDENTIALS = {"access_token": "at-123", "refresh_token": "rt-456"}


def add_connected_company(instance: Instance, **env: str) -> int:
    with instance.runtime(**env) as rt, transaction(rt.sessions) as s:
        company = create_company(
            s,
            rt.clock,
            name="Keyed Ltd",
            slug="keyed",
            home_currency="USD",
            timezone="UTC",
            country="US",
            owner_email="owner@keyed.example",
        )
        return add_connection(s, rt.keyring, rt.clock, company, "demo", "t-1", CREDENTIALS).id


def stored_credentials(instance: Instance, conn_id: int, **env: str) -> str:
    with instance.runtime(**env) as rt, rt.sessions() as s:
        token = s.scalar(select(Connection.credentials_encrypted).where(Connection.id == conn_id))
    assert token is not None
    return token


def readable_only_with(token: str, key: str, others: list[str]) -> None:
    assert json.loads(Keyring([key]).decrypt(token)) == CREDENTIALS
    for other in others:
        with pytest.raises(KeyMismatch):
            Keyring([other]).decrypt(token)


def test_rotate_keys_with_the_secret_file(fresh: Instance):
    fresh.ok("init")
    secret_key = fresh.secrets()["secret_key"]
    [first] = fresh.secrets()["encryption_keys"]
    conn_id = add_connected_company(fresh)
    before = stored_credentials(fresh, conn_id)
    readable_only_with(before, first, [])

    out = fresh.ok("rotate-keys")
    assert "Re-encrypted 1 stored secret with" in out

    keys = fresh.secrets()["encryption_keys"]
    assert len(keys) == 2
    second = keys[0]
    assert keys == [second, first]  # newest first, the old one kept
    assert fresh.secrets()["secret_key"] == secret_key
    assert fresh.secret_mode() == 0o600
    after = stored_credentials(fresh, conn_id)
    assert after != before
    readable_only_with(after, second, [first])
    fresh.ok("report", "--company", "keyed")
    # The database's key check moved to the new key too: the old key alone no longer opens it.
    assert_one_sentence_error(
        fresh.run("report", "--company", "keyed", ARBRIDGE_ENCRYPTION_KEYS=first),
        "encryption keys cannot read this database",
    )

    fresh.ok("rotate-keys", "--drop-old")

    keys = fresh.secrets()["encryption_keys"]
    assert len(keys) == 1
    [third] = keys
    assert third not in (first, second)
    assert fresh.secret_mode() == 0o600
    readable_only_with(stored_credentials(fresh, conn_id), third, [first, second])
    fresh.ok("report", "--company", "keyed")


@pytest.mark.subprocess
def test_rotate_keys_with_keys_from_the_environment(fresh: Instance):
    old, new = new_key(), new_key()
    env = {"ARBRIDGE_SECRET_KEY": "s" * 48, "ARBRIDGE_ENCRYPTION_KEYS": old}
    fresh.ok("init", **env)
    assert not fresh.secret_file.exists()  # the environment holds the secrets
    conn_id = add_connected_company(fresh, **env)

    rotated = {**env, "ARBRIDGE_ENCRYPTION_KEYS": f"{new},{old}"}
    assert "Re-encrypted 1 stored secret with" in fresh.ok("rotate-keys", **rotated)

    assert not fresh.secret_file.exists()
    readable_only_with(stored_credentials(fresh, conn_id, **rotated), new, [old])
    fresh.ok("report", "--company", "keyed", **{**env, "ARBRIDGE_ENCRYPTION_KEYS": new})
