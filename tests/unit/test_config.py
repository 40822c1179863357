from __future__ import annotations

import os
import stat

import pytest

from arbridge.config import Settings
from arbridge.crypto import Keyring, create_secret_file, new_key, read_secret_file
from arbridge.errors import AlreadyInitialised, ConfigError, KeyMismatch, NotInitialised


def env(tmp_path, **extra):
    return {"ARBRIDGE_INSTANCE_PATH": str(tmp_path / "instance"), **extra}


def test_defaults_to_sqlite_in_the_instance_folder(tmp_path):
    s = Settings.from_env(env(tmp_path), dotenv=False)
    assert s.database_url == f"sqlite:///{tmp_path / 'instance' / 'arbridge.db'}"
    assert s.is_sqlite and not s.secure_cookies


def test_bare_postgresql_url_gets_the_psycopg_driver(tmp_path):
    s = Settings.from_env(
        env(tmp_path, ARBRIDGE_DATABASE_URL="postgresql://u@h:5432/db"), dotenv=False
    )
    assert s.database_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize("url", ["not a url", "mysql://x@y/z", "://"])
def test_malformed_database_url_is_one_clear_sentence(tmp_path, url):
    with pytest.raises(ConfigError, match="ARBRIDGE_DATABASE_URL"):
        Settings.from_env(env(tmp_path, ARBRIDGE_DATABASE_URL=url), dotenv=False)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORKER_TICK_SECONDS", "soon"),
        ("WORKER_TICK_SECONDS", "0"),
        ("DEFAULT_TIMEZONE", "Mars/Base"),
        ("BASE_URL", "ftp://x"),
        # Each crashed the first command that used it, with a traceback.
        ("LOG_LEVEL", "bogus"),
        ("LOG_LEVEL", "5"),
        ("LOGIN_LINK_MINUTES", "99999999999999999999999"),
        ("LOGIN_LINK_MINUTES", "100000000"),
        ("SYNC_INTERVAL_MINUTES", "٣"),
        ("SYNC_INTERVAL_MINUTES", "0"),
        ("SYNC_INTERVAL_MINUTES", "100000000000000"),
        ("WORKER_TICK_SECONDS", "+30"),
        ("WORKER_TICK_SECONDS", "10000000000000"),
    ],
)
def test_bad_values_are_refused(tmp_path, name, value):
    with pytest.raises(ConfigError, match=f"ARBRIDGE_{name}"):
        Settings.from_env(env(tmp_path, **{f"ARBRIDGE_{name}": value}), dotenv=False)


def test_requires_secrets_until_init(tmp_path):
    s = Settings.from_env(env(tmp_path), dotenv=False)
    with pytest.raises(NotInitialised, match="arbridge init"):
        s.require_secrets()


def test_secret_file_is_private_and_never_overwritten(tmp_path):
    path = create_secret_file(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    before = path.read_bytes()
    with pytest.raises(AlreadyInitialised):
        create_secret_file(tmp_path)
    assert path.read_bytes() == before


def test_env_keys_override_the_secret_file(tmp_path):
    create_secret_file(tmp_path / "instance")
    key = new_key()
    s = Settings.from_env(
        env(tmp_path, ARBRIDGE_ENCRYPTION_KEYS=f" {key} , {new_key()}"), dotenv=False
    )
    assert s.encryption_keys[0] == key and len(s.encryption_keys) == 2
    assert s.encryption_keys_from_env
    file_keys = read_secret_file(tmp_path / "instance")["encryption_keys"]
    assert s.encryption_keys[0] not in file_keys


def test_secrets_never_appear_in_repr(tmp_path):
    create_secret_file(tmp_path / "instance")
    s = Settings.from_env(env(tmp_path, ARBRIDGE_SMTP_URL="smtp://u:hunter2@mail"), dotenv=False)
    text = repr(s)
    assert s.secret_key not in text and s.encryption_keys[0] not in text and "hunter2" not in text


def test_dotenv_is_read_and_environment_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("ARBRIDGE_WORKER_TICK_SECONDS=7\nARBRIDGE_LOG_LEVEL=debug\n")
    s = Settings.from_env(env(tmp_path, ARBRIDGE_LOG_LEVEL="warning"))
    assert s.worker_tick_seconds == 7 and s.log_level == "WARNING"


def test_keyring_rotation_and_wrong_keys():
    old, new = new_key(), new_key()
    token = Keyring([old]).encrypt("refresh-token")
    both = Keyring([new, old])
    rotated = both.rotate(token)
    assert Keyring([new]).decrypt(rotated) == "refresh-token"
    with pytest.raises(KeyMismatch):
        Keyring([new]).decrypt(token)
    with pytest.raises(ConfigError, match="malformed"):
        Keyring(["not-a-key"])


def test_keys_from_a_dotenv_file_are_re_read_by_a_running_keyring(tmp_path, monkeypatch):
    """After `rotate-keys` with the new key put first in .env, a running server reads and writes
    with it without a restart (it re-reads the file that named the keys)."""
    from arbridge.config import key_source

    old, new = new_key(), new_key()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARBRIDGE_ENCRYPTION_KEYS", raising=False)
    (tmp_path / ".env").write_text(f"ARBRIDGE_ENCRYPTION_KEYS={old}\n")
    s = Settings.from_env(env(tmp_path))
    keyring = Keyring(s.encryption_keys, source=key_source(s))
    (tmp_path / ".env").write_text(f"ARBRIDGE_ENCRYPTION_KEYS={new},{old}\n")
    assert keyring.decrypt(Keyring([new]).encrypt("x")) == "x"
    assert Keyring([new]).decrypt(keyring.encrypt("y")) == "y"


def test_a_re_read_keyring_writes_with_the_newest_and_still_reads_dropped_keys():
    first, second = new_key(), new_key()
    source = [[first]]
    keyring = Keyring([first], source=lambda: source[0])
    old_secret = keyring.encrypt("old")
    source[0] = [second]  # rotated and the old key dropped, as `rotate-keys --drop-old` does
    new_secret = keyring.encrypt("new")
    assert Keyring([second]).decrypt(new_secret) == "new"
    # A secret a slower process wrote with the dropped key is still readable here.
    assert keyring.decrypt(old_secret) == "old"
    source[0] = ["not a fernet key"]  # a half-written or broken file changes nothing
    assert Keyring([second]).decrypt(keyring.encrypt("still")) == "still"
    with pytest.raises(KeyMismatch):
        keyring.decrypt(Keyring([new_key()]).encrypt("never"))
