"""SMTP delivery with smtplib: STARTTLS or implicit TLS, a timeout on every call, typed errors."""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from arbridge.errors import ConfigError, Rejected, Transient

log = logging.getLogger(__name__)

SCHEMES = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("ssl", 465)}


class MailBounced(Rejected):
    """The server refused the recipient or the message for good (5xx): do not retry."""

    def __init__(self, message: str, recipient: str | None, code: int) -> None:
        super().__init__(message)
        self.recipient = recipient
        self.code = code


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
    try:
        timeout = float(query.get("timeout", ["30"])[0])
    except ValueError as e:
        raise ConfigError("ARBRIDGE_SMTP_URL timeout must be a number of seconds") from e
    return SmtpConfig(
        host=parts.hostname,
        port=port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=timeout,
    )


class SmtpTransport:
    def __init__(self, url: str, ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = parse_url(url)
        self.ssl_context = ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        c = self.config
        if c.security == "ssl":
            return smtplib.SMTP_SSL(c.host, c.port, timeout=c.timeout, context=self.ssl_context)
        client = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        if c.security == "starttls":
            client.ehlo()
            if not client.has_extn("starttls"):
                client.close()
                raise MailConfigError(f"the mail server {c.where} does not offer STARTTLS")
            client.starttls(context=self.ssl_context)
            client.ehlo()
        return client

    def send(self, msg: EmailMessage) -> str:
        """Send one message; returns its Message-ID. Raises Transient, MailBounced or
        MailConfigError."""
        c = self.config
        rcpt = str(msg["To"])
        try:
            client = self._connect()
            try:
                if c.username:
                    client.login(c.username, c.password or "")
                client.send_message(msg)
            finally:
                try:
                    client.quit()
                except (smtplib.SMTPException, OSError):
                    client.close()
        except smtplib.SMTPRecipientsRefused as e:
            code, reply = next(iter(e.recipients.values()))
            raise _by_code(code, reply, rcpt, c.where) from None
        except smtplib.SMTPNotSupportedError:
            raise MailConfigError(
                f"the mail server {c.where} does not offer login (AUTH); check ARBRIDGE_SMTP_URL"
            ) from None
        except smtplib.SMTPAuthenticationError as e:
            raise MailConfigError(
                f"the mail server {c.where} refused the login ({e.smtp_code})"
            ) from None
        except smtplib.SMTPSenderRefused as e:
            if 400 <= e.smtp_code < 500:
                raise Transient(f"the mail server {c.where} deferred: {e.smtp_code}") from None
            raise MailConfigError(
                f"the mail server {c.where} refused the sender {e.sender!r} ({e.smtp_code})"
            ) from None
        except smtplib.SMTPResponseException as e:
            raise _by_code(e.smtp_code, e.smtp_error, rcpt, c.where) from None
        except ssl.SSLCertVerificationError as e:
            raise MailConfigError(
                f"the mail server {c.where} presented a certificate that cannot be trusted "
                f"({e.verify_message})"
            ) from None
        except (smtplib.SMTPException, OSError) as e:
            # Connection refused, dropped, timed out, TLS handshake: worth another try later.
            raise Transient(f"could not reach the mail server {c.where}: {type(e).__name__}") from e
        return str(msg["Message-ID"])


def _by_code(code: int, reply: bytes | str, rcpt: str, where: str) -> Exception:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    text = " ".join(text.split())[:200]
    if 400 <= code < 500:
        return Transient(f"the mail server {where} deferred the message: {code} {text}")
    return MailBounced(f"the mail server refused {rcpt}: {code} {text}", rcpt, code)
