"""Secrets at rest: MultiFernet over the instance's keys (newest first), and the instance secret file."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from arbridge.errors import AlreadyInitialised, ConfigError, KeyMismatch
from arbridge.wording import counted

log = logging.getLogger(__name__)

SECRET_FILE_NAME = "secret.json"  # noqa: S105 (a file name, not a secret)


KeySource = Callable[[], Sequence[str] | None]


def _multi(keys: Sequence[str]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as e:
        raise ConfigError(
            "an encryption key is malformed: each must be a urlsafe base64 Fernet key"
        ) from e


class Keyring:
    """Encrypts with the newest key, decrypts with any of them, re-encrypts to the newest.

    With a `source` (the secret file, or the .env file that names ARBRIDGE_ENCRYPTION_KEYS), a
    running server follows `arbridge rotate-keys` without a restart: it re-reads the source
    before every encryption (so it writes with the newest key) and when a decryption meets a
    key it does not hold. Keys dropped from the source stay readable in memory (never used to
    write), so a secret written by a slower process is not lost to this one.
    """

    def __init__(self, keys: Sequence[str], source: KeySource | None = None) -> None:
        if not keys:
            raise ConfigError("no encryption key is configured")
        self._keys = tuple(keys)
        self._fernet = _multi(self._keys)
        self._source = source
        self._lock = threading.Lock()

    @property
    def newest(self) -> str:
        return self._keys[0]

    def refresh(self) -> bool:
        """Re-read the key source; returns True when it named keys this keyring did not use."""
        if self._source is None:
            return False
        try:
            fresh = tuple(self._source() or ())
            if not fresh:
                return False
            merged = (*fresh, *(k for k in self._keys if k not in fresh))
            if merged == self._keys:
                return False
            fernet = _multi(merged)
        except (ConfigError, OSError) as e:
            log.warning("could not re-read the encryption keys, keeping the ones in use: %s", e)
            return False
        with self._lock:
            self._keys, self._fernet = merged, fernet
        log.info("encryption keys re-read: %s, newest first", counted(len(merged), "key"))
        return True

    def encrypt(self, plaintext: str) -> str:
        self.refresh()
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self._with_refresh(lambda f: f.decrypt(token.encode())).decode()

    def rotate(self, token: str) -> str:
        self.refresh()
        return self._with_refresh(lambda f: f.rotate(token.encode())).decode()

    def needs_older_key(self, token: str) -> bool:
        """True when the newest key alone cannot read this secret."""
        try:
            Fernet(self.newest.encode()).decrypt(token.encode())
        except InvalidToken:
            return True
        return False

    def _with_refresh(self, op: Callable[[MultiFernet], bytes]) -> bytes:
        try:
            return op(self._fernet)
        except InvalidToken:
            if self.refresh():
                try:
                    return op(self._fernet)
                except InvalidToken:
                    pass
        raise KeyMismatch("a stored secret cannot be decrypted with the configured encryption keys")


def new_key() -> str:
    return Fernet.generate_key().decode()


def write_private_text(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, readable by the owner only (0600) from the first
    byte: the temporary file is created with those permissions, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older .tmp left with looser permissions is tightened too
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def open_private_lock(path: Path) -> IO[str]:
    """A lock file (for flock) created readable by the owner only, like what it guards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)  # one an older version left 0644 is tightened too
    return os.fdopen(fd, "a")


def _write_private(path: Path, data: dict[str, object], *, exclusive: bool) -> None:
    """Write JSON readable by the owner only; the file never exists with looser permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    if exclusive:
        fd = os.open(path, flags, 0o600)
        target = path
    else:
        target = path.with_suffix(".tmp")
        fd = os.open(target, flags | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    if target != path:
        os.replace(target, path)
    os.chmod(path, 0o600)


def create_secret_file(instance_path: Path) -> Path:
    path = instance_path / SECRET_FILE_NAME
    try:
        _write_private(
            path,
            {"secret_key": secrets.token_urlsafe(48), "encryption_keys": [new_key()]},
            exclusive=True,
        )
    except FileExistsError as e:
        raise AlreadyInitialised(f"{path} already exists; nothing was changed") from e
    return path


def read_secret_file(instance_path: Path) -> dict[str, object] | None:
    path = instance_path / SECRET_FILE_NAME
    try:
        with path.open() as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} cannot be read as arbridge's secret file") from e
    if not isinstance(data, dict) or not data.get("secret_key") or not data.get("encryption_keys"):
        raise ConfigError(f"{path} is missing its secret key or encryption keys")
    return data


def prepend_key_to_secret_file(instance_path: Path, key: str) -> None:
    data = read_secret_file(instance_path)
    if data is None:
        raise ConfigError("there is no secret file to rotate: run `arbridge init` first")
    keys = [key, *data["encryption_keys"]]  # type: ignore[misc]
    _write_private(
        instance_path / SECRET_FILE_NAME, {**data, "encryption_keys": keys}, exclusive=False
    )


def drop_old_keys_from_secret_file(instance_path: Path) -> list[str]:
    """Keep only the newest key; returns the keys dropped (to put back if they are still needed)."""
    data = read_secret_file(instance_path)
    if data is None:
        return []
    newest, *dropped = data["encryption_keys"]  # type: ignore[misc]
    _write_private(
        instance_path / SECRET_FILE_NAME, {**data, "encryption_keys": [newest]}, exclusive=False
    )
    return dropped


def restore_keys_to_secret_file(instance_path: Path, keys: Sequence[str]) -> None:
    """Append keys (after the ones in the file) that a stored secret turned out to need."""
    data = read_secret_file(instance_path)
    if data is None:
        return
    current = list(data["encryption_keys"])  # type: ignore[call-overload]
    _write_private(
        instance_path / SECRET_FILE_NAME,
        {**data, "encryption_keys": current + [k for k in keys if k not in current]},
        exclusive=False,
    )


def keys_from_secret_file(instance_path: Path) -> KeySource:
    def read() -> Sequence[str] | None:
        data = read_secret_file(instance_path)
        return list(data["encryption_keys"]) if data else None  # type: ignore[call-overload]

    return read
