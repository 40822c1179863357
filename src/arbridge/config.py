"""One frozen settings object, read from ARBRIDGE_* variables (and an optional .env) at startup."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from arbridge.crypto import SECRET_FILE_NAME, KeySource, keys_from_secret_file, read_secret_file
from arbridge.errors import ConfigError, NotInitialised

PREFIX = "ARBRIDGE_"


def _split_keys(raw: str | None) -> tuple[str, ...]:
    return tuple(k.strip() for k in (raw or "").split(",") if k.strip())


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as e:
        raise ConfigError(f"{PREFIX}{name} must be a whole number, not {raw!r}") from e
    if value < minimum:
        raise ConfigError(f"{PREFIX}{name} must be at least {minimum}, not {value}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(PREFIX + name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{PREFIX}{name} must be true or false, not {raw!r}")


def _database_url(raw: str) -> str:
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as e:  # ValueError: a port that is not a number
        raise ConfigError(
            f"ARBRIDGE_DATABASE_URL is not a valid database URL ({raw!r}); "
            "use sqlite:///path/to/arbridge.db or postgresql+psycopg://user@host:5432/db"
        ) from e
    backend = url.get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise ConfigError(
            f"ARBRIDGE_DATABASE_URL names {backend!r}; arbridge supports sqlite and postgresql"
        )
    if backend == "postgresql" and url.drivername == "postgresql":
        # psycopg 3 is the driver we ship; a bare postgresql:// would ask for psycopg2.
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername not in {"sqlite", "sqlite+pysqlite", "postgresql+psycopg"}:
        raise ConfigError(
            f"ARBRIDGE_DATABASE_URL asks for the driver {url.get_driver_name()!r}, which arbridge "
            "does not ship; use sqlite:/// or postgresql+psycopg://"
        )
    return url.render_as_string(hide_password=False)


def _qbo(env: Mapping[str, str]) -> dict[str, str | None]:
    environment = (env.get(PREFIX + "QBO_ENVIRONMENT") or "sandbox").lower()
    if environment not in {"sandbox", "production"}:
        raise ConfigError(
            f"ARBRIDGE_QBO_ENVIRONMENT must be sandbox or production, not {environment!r}"
        )
    for name in ("QBO_API_BASE", "QBO_DISCOVERY_URL", "QBO_REDIRECT_URI"):
        value = env.get(PREFIX + name)
        if value and urlsplit(value).scheme not in {"http", "https"}:
            raise ConfigError(f"{PREFIX}{name} must be an http(s) URL, not {value!r}")
    return {
        "qbo_client_id": env.get(PREFIX + "QBO_CLIENT_ID") or None,
        "qbo_client_secret": env.get(PREFIX + "QBO_CLIENT_SECRET") or None,
        "qbo_redirect_uri": env.get(PREFIX + "QBO_REDIRECT_URI") or None,
        "qbo_environment": environment,
        "qbo_webhook_verifier": env.get(PREFIX + "QBO_WEBHOOK_VERIFIER") or None,
        "qbo_api_base": env.get(PREFIX + "QBO_API_BASE") or None,
        "qbo_discovery_url": env.get(PREFIX + "QBO_DISCOVERY_URL") or None,
    }


@dataclass(frozen=True)
class Settings:
    instance_path: Path
    database_url: str
    base_url: str = "http://127.0.0.1:5000"
    secret_key: str | None = field(default=None, repr=False)
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    encryption_keys_from_env: bool = False
    # Where the keys were read from, for a running server to re-read after `rotate-keys`: the
    # secret file, or the .env file that names ARBRIDGE_ENCRYPTION_KEYS (None: the process
    # environment, which a running process cannot see change).
    encryption_keys_file: Path | None = None
    default_timezone: str = "UTC"
    worker_tick_seconds: int = 30
    sync_interval_minutes: int = 15
    login_link_minutes: int = 30
    log_level: str = "INFO"
    smtp_url: str | None = field(default=None, repr=False)
    mail_from: str | None = None
    demo: bool = False
    # QuickBooks Online (issue 3).
    qbo_client_id: str | None = None
    qbo_client_secret: str | None = field(default=None, repr=False)
    qbo_redirect_uri: str | None = None
    qbo_environment: str = "sandbox"
    qbo_webhook_verifier: str | None = field(default=None, repr=False)
    qbo_api_base: str | None = None
    qbo_discovery_url: str | None = None
    stripe_secret_key: str | None = field(default=None, repr=False)
    stripe_webhook_secret: str | None = field(default=None, repr=False)
    stripe_connect: bool = False
    stripe_api_base: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
        env: dict[str, str] = {}
        dotenv_path = Path(".env").absolute() if dotenv and Path(".env").is_file() else None
        if dotenv_path is not None:
            env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        given = os.environ if environ is None else environ
        env.update(given)

        instance_path = Path(env.get(PREFIX + "INSTANCE_PATH") or "instance").absolute()
        raw_url = env.get(PREFIX + "DATABASE_URL") or f"sqlite:///{instance_path / 'arbridge.db'}"
        base_url = (env.get(PREFIX + "BASE_URL") or "http://127.0.0.1:5000").rstrip("/")
        if urlsplit(base_url).scheme not in {"http", "https"} or not urlsplit(base_url).netloc:
            raise ConfigError(f"ARBRIDGE_BASE_URL must be an http(s) URL, not {base_url!r}")
        timezone = env.get(PREFIX + "DEFAULT_TIMEZONE") or "UTC"
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ConfigError(
                f"ARBRIDGE_DEFAULT_TIMEZONE {timezone!r} is not a known timezone"
            ) from e

        secret_key = env.get(PREFIX + "SECRET_KEY") or None
        env_keys = _split_keys(env.get(PREFIX + "ENCRYPTION_KEYS"))
        file_data = read_secret_file(instance_path)
        if file_data is not None:
            secret_key = secret_key or str(file_data["secret_key"])
        file_keys = tuple(file_data["encryption_keys"]) if file_data else ()  # type: ignore[arg-type]
        if env_keys:
            keys_file = None if given.get(PREFIX + "ENCRYPTION_KEYS") else dotenv_path
        else:
            keys_file = instance_path / SECRET_FILE_NAME if file_keys else None

        return cls(
            instance_path=instance_path,
            database_url=_database_url(raw_url),
            base_url=base_url,
            secret_key=secret_key,
            encryption_keys=env_keys or file_keys,
            encryption_keys_from_env=bool(env_keys),
            encryption_keys_file=keys_file,
            default_timezone=timezone,
            worker_tick_seconds=_int(env, "WORKER_TICK_SECONDS", 30, minimum=1),
            sync_interval_minutes=_int(env, "SYNC_INTERVAL_MINUTES", 15, minimum=1),
            login_link_minutes=_int(env, "LOGIN_LINK_MINUTES", 30, minimum=1),
            log_level=(env.get(PREFIX + "LOG_LEVEL") or "INFO").upper(),
            smtp_url=env.get(PREFIX + "SMTP_URL") or None,
            mail_from=env.get(PREFIX + "MAIL_FROM") or None,
            **_qbo(env),
            stripe_secret_key=env.get(PREFIX + "STRIPE_SECRET_KEY") or None,
            stripe_webhook_secret=env.get(PREFIX + "STRIPE_WEBHOOK_SECRET") or None,
            stripe_connect=_flag(env, "STRIPE_CONNECT"),
            stripe_api_base=env.get(PREFIX + "STRIPE_API_BASE") or None,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    def require_secrets(self) -> Settings:
        """Refuse to run without the Flask secret key and the token-encryption keys."""
        if not self.secret_key or not self.encryption_keys:
            raise NotInitialised(
                f"no secret key or encryption key found in {self.instance_path}: on a new install "
                "run `arbridge init`; for an existing database restore its secret.json from your "
                "backup or set ARBRIDGE_SECRET_KEY and ARBRIDGE_ENCRYPTION_KEYS"
            )
        return self

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def key_source(settings: Settings) -> KeySource | None:
    """How a running process re-reads its encryption keys (None: it cannot)."""
    path = settings.encryption_keys_file
    if path is None:
        return None
    if not settings.encryption_keys_from_env:
        return keys_from_secret_file(path.parent)

    def from_dotenv() -> tuple[str, ...]:
        return _split_keys(dotenv_values(path).get(PREFIX + "ENCRYPTION_KEYS"))

    return from_dotenv
