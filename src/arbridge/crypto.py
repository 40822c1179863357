"""Secrets at rest: MultiFernet over the instance's keys (newest first), and the instance secret file."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from arbridge.errors import AlreadyInitialised, ConfigError, KeyMismatch

SECRET_FILE_NAME = "secret.json"  # noqa: S105 (a file name, not a secret)


class Keyring:
    """Encrypts with the newest key, decrypts with any of them, re-encrypts to the newest."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigError("no encryption key is configured")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except (ValueError, TypeError) as e:
            raise ConfigError(
                "an encryption key is malformed: each must be a urlsafe base64 Fernet key"
            ) from e

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as e:
            raise KeyMismatch(
                "a stored secret cannot be decrypted with the configured encryption keys"
            ) from e

    def rotate(self, token: str) -> str:
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as e:
            raise KeyMismatch(
                "a stored secret cannot be decrypted with the configured encryption keys"
            ) from e


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


def drop_old_keys_from_secret_file(instance_path: Path) -> None:
    data = read_secret_file(instance_path)
    if data is None:
        return
    newest = data["encryption_keys"][0]  # type: ignore[index]
    _write_private(
        instance_path / SECRET_FILE_NAME, {**data, "encryption_keys": [newest]}, exclusive=False
    )
