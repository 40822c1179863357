"""SMTP delivery with smtplib: STARTTLS or implicit TLS, a timeout on every call, typed errors."""

from __future__ import annotations

import functools
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from arbridge.errors import ConfigError, Rejected, Transient, Unconfirmed

log = logging.getLogger(__name__)

SCHEMES = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("ssl", 465)}


class MailBounced(Rejected):
    """The server refused the recipient or the message for good (5xx): do not retry."""

    def __init__(self, message: str, recipient: str | None, code: int) -> None:
        super().__init__(message)
        self.recipient = recipient
        self.code = code


class MailMaybeSent(Unconfirmed):
    """The whole message reached the server but its final reply did not come back (a timeout or
    a dropped connection after the end of DATA): it may well have been delivered. Never retried;
    the owner is told."""


class MailConfigError(Rejected):
    """The server refused our login or our sender address: the owner must fix the settings."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str  # plain | starttls | ssl
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    # RFC 5321 section 4.5.3.2.6: the reply to the end of DATA may take up to 10 minutes.
    data_timeout: float = 600.0

    @property
    def where(self) -> str:
        """For logs and errors: never the credentials."""
        return f"{self.host}:{self.port} ({self.security})"


def parse_url(url: str) -> SmtpConfig:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError("ARBRIDGE_SMTP_URL is not a valid URL") from e
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            f"ARBRIDGE_SMTP_URL must start with smtp+starttls://, smtps:// or smtp://, "
            f"not {parts.scheme + '://' if parts.scheme else 'nothing'}"
        )
    if not parts.hostname:
        raise ConfigError("ARBRIDGE_SMTP_URL names no host")
    security, default_port = SCHEMES[parts.scheme]
    query = parse_qs(parts.query)
    timeout = _seconds(query, "timeout", 30.0, 300.0)
    # Never longer than RFC 5321's 10 minutes: the outbox lease is set just above it.
    data_timeout = _seconds(query, "data_timeout", 600.0, 600.0)
    return SmtpConfig(
        host=parts.hostname,
        port=port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=timeout,
        data_timeout=data_timeout,
    )


def _seconds(query: dict[str, list[str]], name: str, default: float, most: float) -> float:
    raw = query.get(name, [str(default)])[0]
    try:
        value = float(raw)
    except ValueError as e:
        raise ConfigError(f"ARBRIDGE_SMTP_URL {name} must be a number of seconds") from e
    if not 0 < value <= most:
        raise ConfigError(f"ARBRIDGE_SMTP_URL {name} must be between 0 and {most:g} seconds")
    return value


class _BodyAware:
    """Mixed into smtplib's clients: knows when the whole message (body and final dot) has been
    handed to the server, and from then on waits `data_timeout` for the final reply.

    smtplib's `data()` sends the DATA command as text and the message (ending CRLF.CRLF) as
    bytes; every other command is sent as text, so the bytes sent inside `data()` are the body.
    """

    data_timeout: float = 600.0
    body_sent: bool = False
    _in_data: bool = False
    sock: Any

    def data(self, msg: Any) -> tuple[int, bytes]:
        self._in_data = True
        try:
            return super().data(msg)  # type: ignore[misc]
        finally:
            self._in_data = False

    def send(self, s: Any) -> None:
        super().send(s)  # type: ignore[misc]
        if self._in_data and isinstance(s, bytes):
            self.body_sent = True
            if self.sock is not None:
                self.sock.settimeout(self.data_timeout)


class _SMTP(_BodyAware, smtplib.SMTP):
    pass


class _SMTP_SSL(_BodyAware, smtplib.SMTP_SSL):
    pass


@functools.cache
def _system_trust() -> ssl.SSLContext:
    """The machine's CA store, loaded once per process (20 to 50 ms each time by machine, which a
    transport per message paid for every email, plain SMTP included). Contexts are safe to
    share between connections and threads."""
    return ssl.create_default_context()


class _Gone(Exception):
    """A kept connection the server had closed before this message began: connect again."""


class SmtpTransport:
    """Sends messages through one SMTP server. With `keep_open`, the connection of one message
    is kept for the next (one TLS handshake and login for a whole outbox drain, not one per
    message; `close()` says goodbye to the server); otherwise each message has its own."""

    def __init__(
        self, url: str, ssl_context: ssl.SSLContext | None = None, *, keep_open: bool = False
    ) -> None:
        self.config = parse_url(url)
        self._ssl_context = ssl_context
        self.keep_open = keep_open
        self._kept: _SMTP | _SMTP_SSL | None = None

    @property
    def ssl_context(self) -> ssl.SSLContext:
        return self._ssl_context or _system_trust()

    def _connect(self) -> _SMTP | _SMTP_SSL:
        c = self.config
        client: _SMTP | _SMTP_SSL
        if c.security == "ssl":
            client = _SMTP_SSL(c.host, c.port, timeout=c.timeout, context=self.ssl_context)
            client.data_timeout = c.data_timeout
            return client
        client = _SMTP(c.host, c.port, timeout=c.timeout)
        client.data_timeout = c.data_timeout
        if c.security == "starttls":
            client.ehlo()
            if not client.has_extn("starttls"):
                client.close()
                raise MailConfigError(f"the mail server {c.where} does not offer STARTTLS")
            client.starttls(context=self.ssl_context)
            client.ehlo()
        return client

    def send(self, msg: EmailMessage) -> str:
        """Send one message; returns its Message-ID. Raises Transient, MailBounced,
        MailConfigError, or MailMaybeSent when the message went but its reply did not come."""
        kept, self._kept = self._kept, None
        if kept is not None:
            try:
                return self._send_on(kept, msg)
            except _Gone:
                # Servers close idle connections (often with a 421): nothing of this message
                # had gone, so it goes on a new connection, once.
                log.info("the mail server %s closed the kept connection", self.config.where)
        return self._send_on(None, msg)

    def close(self) -> None:
        kept, self._kept = self._kept, None
        if kept is not None:
            self._release(kept)

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _send_on(self, client: _SMTP | _SMTP_SSL | None, msg: EmailMessage) -> str:
        c = self.config
        rcpt = str(msg["To"])
        reused = client is not None
        try:
            if client is None:
                client = self._connect()
                if c.username:
                    client.login(c.username, c.password or "")
            client.body_sent = False
            client.send_message(msg)
        except OSError as e:  # smtplib's own exceptions are OSErrors too
            if client is not None:
                self._release(client)
                if client.body_sent:
                    # After the final dot the server may have queued the message: a retry
                    # could deliver it twice, which is worse than asking the owner to check.
                    log.warning("no final reply from %s after the message was sent: %s", c.where, e)
                    raise MailMaybeSent(
                        f"the mail server {c.where} received the whole message to {rcpt} but "
                        f"did not confirm it ({type(e).__name__}): it may have been delivered"
                    ) from e
            if reused and _closed_by_server(e):
                raise _Gone from e
            raise self._map(e, rcpt) from e
        if self.keep_open:
            if client.sock is not None:
                client.sock.settimeout(c.timeout)  # the body's longer wait is over
            self._kept = client
        else:
            self._release(client)
        return str(msg["Message-ID"])

    def _release(self, client: _SMTP | _SMTP_SSL) -> None:
        """Say goodbye (QUIT) within the command timeout, or just close the socket."""
        try:
            if client.sock is not None:
                client.sock.settimeout(self.config.timeout)
                client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()

    def _map(self, e: Exception, rcpt: str) -> Exception:
        """One place that turns smtplib's failures into arbridge's errors."""
        where = self.config.where
        if isinstance(e, smtplib.SMTPRecipientsRefused):
            code, reply = next(iter(e.recipients.values()))
            return _by_code(code, reply, rcpt, where)
        if isinstance(e, smtplib.SMTPNotSupportedError):
            return MailConfigError(
                f"the mail server {where} does not offer login (AUTH); check ARBRIDGE_SMTP_URL"
            )
        if isinstance(e, smtplib.SMTPAuthenticationError):
            return MailConfigError(f"the mail server {where} refused the login ({e.smtp_code})")
        if isinstance(e, smtplib.SMTPSenderRefused):
            if 400 <= e.smtp_code < 500:
                return Transient(f"the mail server {where} deferred: {e.smtp_code}")
            return MailConfigError(
                f"the mail server {where} refused the sender {e.sender!r} ({e.smtp_code})"
            )
        if isinstance(e, smtplib.SMTPResponseException):
            return _by_code(e.smtp_code, e.smtp_error, rcpt, where)
        if isinstance(e, ssl.SSLCertVerificationError):
            return MailConfigError(
                f"the mail server {where} presented a certificate that cannot be trusted "
                f"({e.verify_message})"
            )
        # Connection refused, dropped, timed out, TLS handshake: worth another try later.
        return Transient(f"could not reach the mail server {where}: {type(e).__name__}")


def _closed_by_server(e: OSError) -> bool:
    """Whether a failure on a kept connection, before the message's body went, says only that
    the connection is no longer there (dropped, or 421 "closing transmission channel")."""
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        return all(code == 421 for code, _reply in e.recipients.values())
    if isinstance(e, smtplib.SMTPResponseException):
        return e.smtp_code == 421
    if isinstance(e, smtplib.SMTPException):
        return isinstance(e, smtplib.SMTPServerDisconnected)
    return True  # the socket's own errors: reset, broken pipe, timed out


def _by_code(code: int, reply: bytes | str, rcpt: str, where: str) -> Exception:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    text = " ".join(text.split())[:200]
    if 400 <= code < 500:
        return Transient(f"the mail server {where} deferred the message: {code} {text}")
    return MailBounced(f"the mail server refused {rcpt}: {code} {text}", rcpt, code)
