"""One root error, and the few kinds the rest of arbridge reacts to differently."""

from __future__ import annotations

from datetime import datetime


class ArbridgeError(Exception):
    """Root of every error arbridge raises on purpose. Its message is one sentence for a human."""


class ConfigError(ArbridgeError):
    """The settings are missing, malformed or inconsistent."""


class NotInitialised(ConfigError):
    """The instance has no database or secret file yet: run `arbridge init`."""


class AlreadyInitialised(ConfigError):
    """`arbridge init` was run against an instance that already exists."""


class KeyMismatch(ConfigError):
    """The configured encryption keys cannot read the secrets stored in the database."""


class NotFound(ArbridgeError):
    """A record, company or token that does not exist (or that the caller may not see)."""


# Connector errors: each connector maps its HTTP responses to these in one place, so whether to
# retry (RateLimited, Transient), reconnect (AuthExpired) or give up is decided once for every
# provider instead of in each caller.
class ConnectorError(ArbridgeError):
    pass


class AuthExpired(ConnectorError):
    """The grant is gone: never retried, the owner must reconnect."""


class RateLimited(ConnectorError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotYet(ArbridgeError):
    """Not a failed try: the side effect may not happen before `at` (a text outside the hours a
    text may arrive where its reader is). The outbox waits until then without counting it."""

    def __init__(self, message: str, at: datetime) -> None:
        super().__init__(message)
        self.at = at


class Transient(ConnectorError):
    """A timeout, a dropped connection or a 5xx: safe to retry with backoff."""


class Unconfirmed(ConnectorError):
    """The request reached the provider but its answer never came back: it may have taken effect.

    Never retried (a retry could do it twice) and never called a failure: the outbox records it
    as "maybe sent" for a person to check.
    """


class Rejected(ConnectorError):
    """The provider refused the request as invalid: retrying will not help."""


class CursorExpired(ConnectorError):
    """An incremental cursor is older than the provider keeps changes: do a full sync."""


class SignatureInvalid(ArbridgeError):
    """A webhook whose signature does not verify."""


class MappingError(ArbridgeError):
    """A ledger record that cannot be mapped into the receivables model."""
