"""A real SMTP server (aiosmtpd) on a free loopback port: plain, STARTTLS or implicit TLS.

Recipients whose local part starts with `bounce` are refused with 550, `later` with 451, so the
tests can drive every reply the transport maps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER, PASSWORD = "arbridge", "s3cret-Pa55"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Inbox:
    messages: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    defer_next: int = 0  # answer this many next recipients with 451, whoever they are
    # Keep the message, then wait this long before the final reply to DATA: a slow server whose
    # "250" comes after the client has stopped waiting (the message was delivered all the same).
    slow_final_reply: float = 0.0
    ehlos: int = 0  # EHLO greetings: one a connection over plain SMTP
    hang_up_after_data: bool = False  # close each connection just after accepting a message
    closing_on_mail: int = 0  # answer this many next MAIL commands with 421 and hang up

    quits: int = 0  # connections the client closed politely

    async def handle_QUIT(self, server, session, envelope):
        self.quits += 1
        return "221 Bye"

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.ehlos += 1
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.closing_on_mail > 0:
            self.closing_on_mail -= 1
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
            return "421 4.4.2 Idle for too long, closing connection"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if self.defer_next > 0:
            self.defer_next -= 1
            return "451 4.7.1 Greylisted, try again later"
        if local.startswith("bounce"):
            return "550 5.1.1 No such user here"
        if local.startswith("later"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg))
        if self.hang_up_after_data:
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
        if self.slow_final_reply:
            await asyncio.sleep(self.slow_final_reply)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def client_context(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


@dataclass
class Server:
    inbox: Inbox
    port: int
    url: str
    client_ssl: ssl.SSLContext | None = None


@contextmanager
def smtp_server(tmp: Path, security: str = "plain", auth: bool = False) -> Iterator[Server]:
    inbox = Inbox()
    port = free_port()
    kwargs: dict = {}
    client_ssl = None
    if security != "plain":
        cert, key = self_signed(tmp)
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        client_ssl = client_context(cert)
        if security == "starttls":
            kwargs.update(tls_context=server_ctx, require_starttls=True)
        else:
            kwargs.update(ssl_context=server_ctx)
    if auth:

        def authenticator(server, session, envelope, mechanism, data):
            ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                USER.encode(),
                PASSWORD.encode(),
            )
            if ok:
                inbox.logins.append(data.login.decode())
            return AuthResult(success=ok, handled=False)

        # aiosmtpd 1.4 offers AUTH only after STARTTLS (it does not count implicit TLS), so
        # logins are tested over STARTTLS. LOGIN is left out: PLAIN is what servers use.
        kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            auth_exclude_mechanism=["LOGIN"],
        )
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, server_hostname="localhost", **kwargs
    )
    controller.start()
    scheme = {"plain": "smtp", "starttls": "smtp+starttls", "ssl": "smtps"}[security]
    creds = f"{USER}:{PASSWORD}@" if auth else ""
    try:
        yield Server(inbox, port, f"{scheme}://{creds}127.0.0.1:{port}?timeout=5", client_ssl)
    finally:
        controller.stop()
