"""One frozen settings object, read from ARBRIDGE_* variables (and an optional .env) at startup."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from arbridge.clock import DEMO_CLOCK_FILE
from arbridge.crypto import SECRET_FILE_NAME, KeySource, keys_from_secret_file, read_secret_file
from arbridge.errors import ConfigError, NotInitialised

PREFIX = "ARBRIDGE_"


def _split_keys(raw: str | None) -> tuple[str, ...]:
    return tuple(k.strip() for k in (raw or "").split(",") if k.strip())


# The insight (KPIs, forecast, flags, 12 months of trends) of a company with at most this many
# invoices is computed inside a web request when stale; a bigger company's by the worker, the
# page showing the last one meanwhile. Measured on the 2-core build machine (SQLite, busy):
# `bench/bench_insight.py --invoices 5000` computes it in ~0.32 s (KPIs 0.064, forecast and
# flags 0.051, trends 0.20), `--invoices 20000` in ~0.55 s (0.118, 0.23, 0.204): 5,000 keeps the
# request's share near 300 ms. ARBRIDGE_INSIGHT_INLINE_INVOICES overrides it.
INSIGHT_INLINE_INVOICES = 5_000


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    """A whole number in ASCII digits within [minimum, maximum] (`int()` takes '٣', '+30' and
    numbers no timedelta or C int can hold: a traceback in the first command that used it)."""
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,12}", raw.strip()):
        raise ConfigError(
            f"{PREFIX}{name} must be a whole number, not {raw!r} (from {minimum} to {maximum}, "
            "in the digits 0-9)"
        )
    value = int(raw)
    if value < minimum:
        raise ConfigError(f"{PREFIX}{name} must be at least {minimum}, not {value}")
    if value > maximum:
        raise ConfigError(f"{PREFIX}{name} must be at most {maximum}, not {value}")
    return value


# Where `arbridge demo` serves (`--host`, `--port`), kept in its instance: the links that the
# CLI's and the worker's work puts in emails lead to the running demo, not to port 5000.
DEMO_ADDRESS_FILE = "demo-address.txt"


def demo_address(instance_path: Path) -> str | None:
    try:
        text = (instance_path / DEMO_ADDRESS_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    parts = urlsplit(text)
    return text if parts.scheme == "http" and parts.netloc and not parts.path else None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(env: Mapping[str, str]) -> str:
    raw = env.get(PREFIX + "LOG_LEVEL") or "INFO"
    if raw.strip().upper() not in LOG_LEVELS:
        raise ConfigError(f"{PREFIX}LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {raw!r}")
    return raw.strip().upper()


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


@dataclass(frozen=True)
class QuickBooksSettings:
    """ARBRIDGE_QBO_*: the Intuit app arbridge runs as (configured once both credentials are set)."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str | None = None
    environment: str = "sandbox"
    webhook_verifier: str | None = field(default=None, repr=False)
    api_base: str | None = None
    discovery_url: str | None = None


@dataclass(frozen=True)
class XeroSettings:
    """ARBRIDGE_XERO_*: the Xero app arbridge runs as (configured once both credentials are set).
    The bases point at another server (a local fake in tests); the defaults are Xero's own."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str | None = None
    webhook_key: str | None = field(default=None, repr=False)
    api_base: str = "https://api.xero.com"
    identity_base: str = "https://identity.xero.com"
    # Records per page of every list read: Xero's documented default is 100; 1,000 is reported
    # to work but is not in the spec (a server that pages smaller is still read to the end).
    page_size: int = 100


@dataclass(frozen=True)
class StripeSettings:
    """ARBRIDGE_STRIPE_*: the platform's Stripe (without a secret key, each business brings its
    own key and the demo uses the simulated Stripe)."""

    secret_key: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    connect: bool = False
    api_base: str | None = None


@dataclass(frozen=True)
class SmtpSettings:
    """ARBRIDGE_SMTP_URL: where email goes (without it, mail is written to the instance folder)."""

    url: str = field(repr=False)


@dataclass(frozen=True)
class TwilioSettings:
    """ARBRIDGE_TWILIO_*: the install's Twilio account for SMS (`configured` once the account
    SID, the auth token and a sender, a Messaging Service SID or a From number, are all set).
    Without it a business may enter its own account on the settings page; `api_base` points the
    SDK at another server (a fake in tests)."""

    account_sid: str | None = None
    auth_token: str | None = field(default=None, repr=False)
    messaging_service_sid: str | None = None
    from_number: str | None = None
    api_base: str | None = None

    @property
    def configured(self) -> bool:
        """An account to send from (the section exists with ARBRIDGE_TWILIO_API_BASE alone:
        the server a business's own account is reached at, in tests)."""
        return bool(
            self.account_sid
            and self.auth_token
            and (self.messaging_service_sid or self.from_number)
        )


# The flat names the settings were known by (ARBRIDGE_ + the upper-cased name, and keyword
# arguments of Settings(...) and Settings.with_(...)): section, and the field in it.
FLAT_NAMES: dict[str, tuple[str, str]] = {
    "qbo_client_id": ("quickbooks", "client_id"),
    "qbo_client_secret": ("quickbooks", "client_secret"),
    "qbo_redirect_uri": ("quickbooks", "redirect_uri"),
    "qbo_environment": ("quickbooks", "environment"),
    "qbo_webhook_verifier": ("quickbooks", "webhook_verifier"),
    "qbo_api_base": ("quickbooks", "api_base"),
    "qbo_discovery_url": ("quickbooks", "discovery_url"),
    "stripe_secret_key": ("stripe", "secret_key"),
    "stripe_webhook_secret": ("stripe", "webhook_secret"),
    "stripe_connect": ("stripe", "connect"),
    "stripe_api_base": ("stripe", "api_base"),
    "smtp_url": ("smtp", "url"),
}
SECTION_TYPES: dict[str, type] = {
    "quickbooks": QuickBooksSettings,
    "stripe": StripeSettings,
    "smtp": SmtpSettings,
    "xero": XeroSettings,
    "twilio": TwilioSettings,
}


def _section_values(section: str, current: Any) -> dict[str, Any]:
    if current is not None:
        return {f.name: getattr(current, f.name) for f in fields(current)}
    return {
        f.name: None if f.default is MISSING else f.default for f in fields(SECTION_TYPES[section])
    }


def _section(section: str, values: Mapping[str, Any]) -> Any:
    """The section for these values, or None while they do not configure it."""
    if section in ("quickbooks", "xero"):
        if not (values.get("client_id") and values.get("client_secret")):
            return None
    elif section == "stripe":
        if not any(
            values.get(name) for name in ("secret_key", "webhook_secret", "connect", "api_base")
        ):
            return None
    elif section == "twilio":
        if not any(values.values()):
            return None
    elif not values.get("url"):
        return None
    return SECTION_TYPES[section](**values)


def _qbo(env: Mapping[str, str]) -> QuickBooksSettings | None:
    environment = (env.get(PREFIX + "QBO_ENVIRONMENT") or "sandbox").lower()
    if environment not in {"sandbox", "production"}:
        raise ConfigError(
            f"ARBRIDGE_QBO_ENVIRONMENT must be sandbox or production, not {environment!r}"
        )
    for name in ("QBO_API_BASE", "QBO_DISCOVERY_URL", "QBO_REDIRECT_URI"):
        value = env.get(PREFIX + name)
        if value and urlsplit(value).scheme not in {"http", "https"}:
            raise ConfigError(f"{PREFIX}{name} must be an http(s) URL, not {value!r}")
    return _section(
        "quickbooks",
        {
            "client_id": env.get(PREFIX + "QBO_CLIENT_ID") or None,
            "client_secret": env.get(PREFIX + "QBO_CLIENT_SECRET") or None,
            "redirect_uri": env.get(PREFIX + "QBO_REDIRECT_URI") or None,
            "environment": environment,
            "webhook_verifier": env.get(PREFIX + "QBO_WEBHOOK_VERIFIER") or None,
            "api_base": env.get(PREFIX + "QBO_API_BASE") or None,
            "discovery_url": env.get(PREFIX + "QBO_DISCOVERY_URL") or None,
        },
    )


def _xero(env: Mapping[str, str]) -> XeroSettings | None:
    for name in ("XERO_API_BASE", "XERO_IDENTITY_BASE", "XERO_REDIRECT_URI"):
        value = env.get(PREFIX + name)
        if value and urlsplit(value).scheme not in {"http", "https"}:
            raise ConfigError(f"{PREFIX}{name} must be an http(s) URL, not {value!r}")
    return _section(
        "xero",
        {
            "client_id": env.get(PREFIX + "XERO_CLIENT_ID") or None,
            "client_secret": env.get(PREFIX + "XERO_CLIENT_SECRET") or None,
            "redirect_uri": env.get(PREFIX + "XERO_REDIRECT_URI") or None,
            "webhook_key": env.get(PREFIX + "XERO_WEBHOOK_KEY") or None,
            "api_base": (env.get(PREFIX + "XERO_API_BASE") or "https://api.xero.com").rstrip("/"),
            "identity_base": (
                env.get(PREFIX + "XERO_IDENTITY_BASE") or "https://identity.xero.com"
            ).rstrip("/"),
            "page_size": _int(env, "XERO_PAGE_SIZE", 100, minimum=1, maximum=1000),
        },
    )


def _twilio(env: Mapping[str, str]) -> TwilioSettings | None:
    base = env.get(PREFIX + "TWILIO_API_BASE") or None
    if base and urlsplit(base).scheme not in {"http", "https"}:
        raise ConfigError(f"{PREFIX}TWILIO_API_BASE must be an http(s) URL, not {base!r}")
    return _section(
        "twilio",
        {
            "account_sid": env.get(PREFIX + "TWILIO_ACCOUNT_SID") or None,
            "auth_token": env.get(PREFIX + "TWILIO_AUTH_TOKEN") or None,
            "messaging_service_sid": env.get(PREFIX + "TWILIO_MESSAGING_SERVICE_SID") or None,
            "from_number": env.get(PREFIX + "TWILIO_FROM") or None,
            "api_base": base.rstrip("/") if base else None,
        },
    )


@dataclass(frozen=True)
class _Fields:
    """The settings' fields (see Settings, which also takes the flat names of the sections)."""

    instance_path: Path
    database_url: str
    base_url: str = "http://127.0.0.1:5000"
    base_url_given: bool = False  # set by ARBRIDGE_BASE_URL (else the default, or the demo's)
    secret_key: str | None = field(default=None, repr=False)
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    encryption_keys_from_env: bool = False
    # Where the keys were read from, for a running server to re-read after `rotate-keys`: the
    # secret file, or the .env file that names ARBRIDGE_ENCRYPTION_KEYS (None: the process
    # environment, which a running process cannot see change).
    encryption_keys_file: Path | None = None
    default_timezone: str = "UTC"
    worker_tick_seconds: int = 30
    # A company with at most this many invoices has its insight computed inside the web
    # request when it is stale; a bigger one's is left to the worker (sync.insight_cache).
    insight_inline_invoices: int = INSIGHT_INLINE_INVOICES
    sync_interval_minutes: int = 15
    login_link_minutes: int = 30
    log_level: str = "INFO"
    # Whether ARBRIDGE_LOG_LEVEL was set: the one-shot commands (`sync`, `report`, ...) log at
    # it then, and otherwise only warnings and errors, beside what they print.
    log_level_given: bool = False
    mail_from: str | None = None
    demo: bool = False
    # One section per outside service, None while it is not configured.
    quickbooks: QuickBooksSettings | None = None
    stripe: StripeSettings | None = None
    smtp: SmtpSettings | None = None
    xero: XeroSettings | None = None
    twilio: TwilioSettings | None = None

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
        given_url = env.get(PREFIX + "BASE_URL") or None
        demo = (instance_path / DEMO_CLOCK_FILE).exists()
        base_url = (
            given_url or (demo_address(instance_path) if demo else None) or "http://127.0.0.1:5000"
        ).rstrip("/")
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
            worker_tick_seconds=_int(env, "WORKER_TICK_SECONDS", 30, minimum=1, maximum=3600),
            insight_inline_invoices=_int(
                env, "INSIGHT_INLINE_INVOICES", INSIGHT_INLINE_INVOICES, 0, 10**9
            ),
            sync_interval_minutes=_int(env, "SYNC_INTERVAL_MINUTES", 15, minimum=1, maximum=1440),
            login_link_minutes=_int(env, "LOGIN_LINK_MINUTES", 30, minimum=1, maximum=7 * 24 * 60),
            log_level=_log_level(env),
            log_level_given=bool(env.get(PREFIX + "LOG_LEVEL")),
            mail_from=env.get(PREFIX + "MAIL_FROM") or None,
            # `arbridge demo` leaves its clock's file in the instance: a demo install.
            demo=demo,
            base_url_given=given_url is not None,
            quickbooks=_qbo(env),
            stripe=_section(
                "stripe",
                {
                    "secret_key": env.get(PREFIX + "STRIPE_SECRET_KEY") or None,
                    "webhook_secret": env.get(PREFIX + "STRIPE_WEBHOOK_SECRET") or None,
                    "connect": _flag(env, "STRIPE_CONNECT"),
                    "api_base": env.get(PREFIX + "STRIPE_API_BASE") or None,
                },
            ),
            smtp=_section("smtp", {"url": env.get(PREFIX + "SMTP_URL") or None}),
            xero=_xero(env),
            twilio=_twilio(env),
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


class Settings(_Fields):
    """One frozen settings object, read once from ARBRIDGE_* variables at startup.

    The outside services each have a section (`settings.quickbooks`, `.xero`, `.stripe`, `.smtp`;
    None while unconfigured). The flat names they were known by before (`qbo_client_id`,
    `stripe_secret_key`, `smtp_url`, ...) are still accepted by `Settings(...)` and `with_(...)`
    and readable as properties, so code and deployments written against them keep working."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        flat = {name: kwargs.pop(name) for name in list(kwargs) if name in FLAT_NAMES}
        super().__init__(*args, **kwargs)
        for section in sorted({FLAT_NAMES[name][0] for name in flat}):
            values = _section_values(section, getattr(self, section))
            values.update(
                {FLAT_NAMES[n][1]: v for n, v in flat.items() if FLAT_NAMES[n][0] == section}
            )
            object.__setattr__(self, section, _section(section, values))

    @property
    def qbo_client_id(self) -> str | None:
        return self.quickbooks.client_id if self.quickbooks is not None else None

    @property
    def qbo_client_secret(self) -> str | None:
        return self.quickbooks.client_secret if self.quickbooks is not None else None

    @property
    def qbo_redirect_uri(self) -> str | None:
        return self.quickbooks.redirect_uri if self.quickbooks is not None else None

    @property
    def qbo_environment(self) -> str:
        return self.quickbooks.environment if self.quickbooks is not None else "sandbox"

    @property
    def qbo_webhook_verifier(self) -> str | None:
        return self.quickbooks.webhook_verifier if self.quickbooks is not None else None

    @property
    def qbo_api_base(self) -> str | None:
        return self.quickbooks.api_base if self.quickbooks is not None else None

    @property
    def qbo_discovery_url(self) -> str | None:
        return self.quickbooks.discovery_url if self.quickbooks is not None else None

    @property
    def stripe_secret_key(self) -> str | None:
        return self.stripe.secret_key if self.stripe is not None else None

    @property
    def stripe_webhook_secret(self) -> str | None:
        return self.stripe.webhook_secret if self.stripe is not None else None

    @property
    def stripe_connect(self) -> bool:
        return self.stripe.connect if self.stripe is not None else False

    @property
    def stripe_api_base(self) -> str | None:
        return self.stripe.api_base if self.stripe is not None else None

    @property
    def smtp_url(self) -> str | None:
        return self.smtp.url if self.smtp is not None else None


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
