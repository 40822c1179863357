"""`arbridge rotate-keys` while a server is running: the server (a runtime in this process, as
`arbridge serve` holds one) picks the new keys up without a restart, writes with the newest, and
`--drop-old` never drops a key that a stored secret still needs."""

from __future__ import annotations

import json

from sqlalchemy import select

from arbridge.crypto import Keyring, new_key
from arbridge.errors import KeyMismatch
from arbridge.sync.db import transaction
from arbridge.sync.model import Connection
from tests.cli.conftest import Instance, assert_one_sentence_error
from tests.cli.test_rotate_keys import CREDENTIALS, add_connected_company, stored_credentials

REFRESHED = {"access_token": "at-new", "refresh_token": "rt-new"}


def server_reads(server, conn_id: int) -> dict:
    """What the running server does on every sync: decrypt the connection's tokens."""
    with server.sessions() as s:
        token = s.scalar(select(Connection.credentials_encrypted).where(Connection.id == conn_id))
    return json.loads(server.keyring.decrypt(token))


def server_writes(server, conn_id: int, creds: dict) -> None:
    """What the running server does on a token refresh: encrypt the new tokens and store them."""
    with transaction(server.sessions) as s:
        s.get(Connection, conn_id).credentials_encrypted = server.keyring.encrypt(json.dumps(creds))


def only_key_reads(token: str, key: str) -> dict:
    return json.loads(Keyring([key]).decrypt(token))


def test_running_server_reads_secrets_after_rotate_keys_without_restart(fresh: Instance):
    fresh.ok("init")
    conn_id = add_connected_company(fresh)
    with fresh.runtime() as server:
        assert server_reads(server, conn_id) == CREDENTIALS

        fresh.ok("rotate-keys")

        assert server_reads(server, conn_id) == CREDENTIALS  # was KeyMismatch until a restart
        server_writes(server, conn_id, REFRESHED)
        newest = fresh.secrets()["encryption_keys"][0]
        # Written with the newest key, not the one the server started with.
        assert only_key_reads(stored_credentials(fresh, conn_id), newest) == REFRESHED


def test_secret_written_by_running_server_after_drop_old_is_not_lost(fresh: Instance):
    fresh.ok("init")
    [first] = fresh.secrets()["encryption_keys"]
    conn_id = add_connected_company(fresh)
    with fresh.runtime() as server:
        server_reads(server, conn_id)

        fresh.ok("rotate-keys", "--drop-old")
        [only] = fresh.secrets()["encryption_keys"]
        assert only != first

        server_writes(server, conn_id, REFRESHED)
        assert server_reads(server, conn_id) == REFRESHED
    # The secret the server wrote after the old key was dropped is readable with the keys that
    # remain: by the file's only key, and by the next command (which reads every secret).
    assert only_key_reads(stored_credentials(fresh, conn_id), only) == REFRESHED
    assert "Re-encrypted 1 stored secret with" in fresh.ok("rotate-keys", "--drop-old")


def test_drop_old_refuses_while_a_secret_still_needs_a_dropped_key(fresh: Instance):
    """Keys from the environment: the admin took the old key out of the list while a server
    started with only the old key was still running and refreshed a token with it. Dropping
    must stop with one clear sentence (and change nothing), not re-encrypt half the database."""
    old, new = new_key(), new_key()
    env = {"ARBRIDGE_SECRET_KEY": "s" * 48, "ARBRIDGE_ENCRYPTION_KEYS": old}
    fresh.ok("init", **env)
    conn_id = add_connected_company(fresh, **env)
    with fresh.runtime(**env) as lagging_server:
        fresh.ok("rotate-keys", **{**env, "ARBRIDGE_ENCRYPTION_KEYS": f"{new},{old}"})
        # The server's environment still names only the old key: nothing to re-read.
        server_writes(lagging_server, conn_id, REFRESHED)

    result = fresh.run("rotate-keys", "--drop-old", **{**env, "ARBRIDGE_ENCRYPTION_KEYS": new})
    assert_one_sentence_error(result, "1 stored secret", "old key")
    assert (
        only_key_reads(
            stored_credentials(
                fresh, conn_id, **{**env, "ARBRIDGE_ENCRYPTION_KEYS": f"{new},{old}"}
            ),
            old,
        )
        == REFRESHED
    )

    # With the old key back in the list, the same command re-encrypts it and then says it is safe.
    out = fresh.ok(
        "rotate-keys", "--drop-old", **{**env, "ARBRIDGE_ENCRYPTION_KEYS": f"{new},{old}"}
    )
    assert "remove the old" in out
    assert (
        only_key_reads(
            stored_credentials(fresh, conn_id, **{**env, "ARBRIDGE_ENCRYPTION_KEYS": new}), new
        )
        == REFRESHED
    )
    try:
        Keyring([old]).decrypt(
            stored_credentials(fresh, conn_id, **{**env, "ARBRIDGE_ENCRYPTION_KEYS": new})
        )
    except KeyMismatch:
        pass
    else:
        raise AssertionError("the old key still reads the secret")
