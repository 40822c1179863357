"""The SMTP transport against a real SMTP server: TLS both ways, headers, and every reply mapped."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest

from arbridge.connectors.email import (
    MailBounced,
    MailConfigError,
    MailMaybeSent,
    OutgoingEmail,
    SmtpTransport,
    build_message,
    parse_url,
)
from arbridge.errors import ConfigError, Transient
from tests.contract.email.server import PASSWORD, free_port, smtp_server

SENT_AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def mail(to: str = "alice@harbor.example", **kw) -> OutgoingEmail:
    base = {
        "to": to,
        "subject": "Reminder: invoice INV-1001 is overdue",
        "text": "Hello Alice,\n\nInvoice INV-1001 is overdue.\n",
        "html": "<p>Hello Alice,</p><p>Invoice INV-1001 is overdue.</p>",
        "mail_from": "reminders@arbridge.example",
        "from_name": "Acme Supply Co.",
        "reply_to": "owner@acme-supply.example",
        "unsubscribe_url": "https://arbridge.example/u/tok123",
        "sent_at": SENT_AT,
    }
    return OutgoingEmail(**{**base, **kw})


@pytest.mark.parametrize(
    ("security", "auth"), [("plain", False), ("starttls", True), ("ssl", False)]
)
def test_a_message_arrives_with_the_headers_mail_providers_want(tmp_path, security, auth):
    with smtp_server(tmp_path, security, auth) as server:
        transport = SmtpTransport(server.url, ssl_context=server.client_ssl)
        message_id = transport.send(build_message(mail()))
    [got] = server.inbox.messages
    msg = got.message
    assert got.rcpt_tos == ["alice@harbor.example"]
    assert got.mail_from == "reminders@arbridge.example"
    assert msg["Message-ID"] == message_id and message_id.endswith("@arbridge.example>")
    assert msg["From"] == '"Acme Supply Co." <reminders@arbridge.example>'
    assert msg["Reply-To"] == "owner@acme-supply.example"
    assert msg["List-Unsubscribe"] == "<https://arbridge.example/u/tok123>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Date"] == "Tue, 24 Nov 2026 15:00:00 +0000"
    assert msg.get_body(("plain",)).get_content().startswith("Hello Alice")
    assert "<p>Hello Alice,</p>" in msg.get_body(("html",)).get_content()
    assert server.inbox.logins == (["arbridge"] if auth else [])


def test_starttls_refuses_a_server_whose_certificate_it_cannot_trust(tmp_path):
    with (
        smtp_server(tmp_path, "starttls") as server,
        pytest.raises(MailConfigError, match="cannot be trusted"),
    ):
        SmtpTransport(server.url).send(build_message(mail()))
    assert server.inbox.messages == []


def test_a_refused_recipient_is_a_bounce_and_a_451_is_transient(tmp_path):
    with smtp_server(tmp_path) as server:
        transport = SmtpTransport(server.url)
        with pytest.raises(MailBounced) as bounced:
            transport.send(build_message(mail("bounce@harbor.example")))
        with pytest.raises(Transient, match="451"):
            transport.send(build_message(mail("later@harbor.example")))
    assert bounced.value.code == 550 and bounced.value.recipient == "bounce@harbor.example"
    assert server.inbox.messages == []


def test_a_wrong_password_is_the_owners_problem_and_never_logged(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with smtp_server(tmp_path, "starttls", auth=True) as server:
        url = server.url.replace(PASSWORD, "wrong-password")
        with pytest.raises(MailConfigError, match="refused the login") as e:
            SmtpTransport(url, ssl_context=server.client_ssl).send(build_message(mail()))
    assert "wrong-password" not in str(e.value) and "wrong-password" not in caplog.text
    assert "wrong-password" not in repr(parse_url(url))


def test_nobody_listening_is_transient():
    url = f"smtp://127.0.0.1:{free_port()}?timeout=2"
    with pytest.raises(Transient, match="could not reach"):
        SmtpTransport(url).send(build_message(mail()))


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://mail.example", "must start with"),
        ("mail.example:25", "must start with"),
        ("smtp://", "no host"),
        ("smtps://h:notaport", "not a valid URL"),
        ("smtp://h?timeout=soon", "timeout"),
        ("smtp://h?data_timeout=nan", "data_timeout must be between 0 and 600"),
        ("smtp://h?data_timeout=3600", "data_timeout must be between 0 and 600"),
        ("smtp://h?timeout=0", "timeout must be between 0 and 300"),
    ],
)
def test_bad_smtp_urls_are_one_sentence(url, error):
    with pytest.raises(ConfigError, match=error):
        parse_url(url)


def test_url_defaults_and_escaped_credentials():
    c = parse_url("smtp+starttls://me%40acme.example:p%3Ass@mail.example")
    assert (c.host, c.port, c.security, c.username, c.password) == (
        "mail.example",
        587,
        "starttls",
        "me@acme.example",
        "p:ss",
    )
    assert parse_url("smtps://mail.example").port == 465
    assert parse_url("smtp://mail.example").port == 25


def test_header_injection_through_names_and_subjects_is_flattened():
    msg = build_message(
        mail(subject="Hi\r\nBcc: victim@example.com", from_name="Acme\nBcc: x@example.com")
    )
    assert msg["Bcc"] is None
    assert "victim@example.com" in msg["Subject"]


def test_a_late_final_reply_after_the_body_is_maybe_sent_not_transient(tmp_path):
    with smtp_server(tmp_path) as server:
        server.inbox.slow_final_reply = 2.0
        transport = SmtpTransport(server.url + "&data_timeout=0.5")
        with pytest.raises(MailMaybeSent, match="may have been delivered") as e:
            transport.send(build_message(mail()))
        assert not isinstance(e.value, Transient)
        assert len(server.inbox.messages) == 1


def test_the_final_reply_is_awaited_longer_than_the_command_timeout(tmp_path):
    # RFC 5321 4.5.3.2.6: the client waits 10 minutes for the reply to the end of DATA, far
    # longer than for any other command; here 3 s for DATA against 0.5 s for the rest.
    with smtp_server(tmp_path) as server:
        server.inbox.slow_final_reply = 1.0
        url = server.url.replace("timeout=5", "timeout=0.5") + "&data_timeout=3"
        SmtpTransport(url).send(build_message(mail()))
    assert len(server.inbox.messages) == 1
    assert parse_url("smtp://mail.example").data_timeout == 600


def test_each_message_loaded_the_systems_certificates_again(tmp_path, monkeypatch):
    """A transport per message (the outbox's handler makes one) read the machine's whole CA
    store each time, TLS or not: a third of a reminder email's CPU (bench/bench_send.py)."""
    import ssl

    loads = []
    real = ssl.create_default_context

    def counted(*args, **kw):
        if not args and not kw:  # the system's store (the test server's own contexts name files)
            loads.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(ssl, "create_default_context", counted)
    with smtp_server(tmp_path) as server:
        for to in ("a@harbor.example", "b@harbor.example", "c@harbor.example"):
            SmtpTransport(server.url).send(build_message(mail(to)))
    assert len(server.inbox.messages) == 3
    assert loads == []  # plain SMTP: no TLS, no certificates
    with smtp_server(tmp_path, "starttls") as server:
        for _ in range(3):
            with pytest.raises(MailConfigError, match="cannot be trusted"):
                SmtpTransport(server.url).send(build_message(mail()))
    assert len(loads) <= 1  # once for the process, whatever the number of messages


def test_a_kept_connection_sends_every_message_of_a_drain_after_one_handshake_and_login(tmp_path):
    with smtp_server(tmp_path, "starttls", auth=True) as server:
        with SmtpTransport(server.url, ssl_context=server.client_ssl, keep_open=True) as kept:
            for to in ("a@harbor.example", "b@harbor.example", "c@harbor.example"):
                kept.send(build_message(mail(to)))
        assert [m.rcpt_tos for m in server.inbox.messages] == [
            ["a@harbor.example"],
            ["b@harbor.example"],
            ["c@harbor.example"],
        ]
        assert server.inbox.logins == ["arbridge"]  # one connection, one TLS handshake
        for to in ("d@harbor.example", "e@harbor.example"):
            SmtpTransport(server.url, ssl_context=server.client_ssl).send(build_message(mail(to)))
        assert server.inbox.logins == ["arbridge"] * 3  # without: a connection a message


@pytest.mark.parametrize("how", ["hangs up", "says 421"])
def test_a_kept_connection_the_server_closed_sends_the_next_message_once_on_a_new_one(
    tmp_path, how
):
    with smtp_server(tmp_path) as server, SmtpTransport(server.url, keep_open=True) as kept:
        kept.send(build_message(mail("a@harbor.example")))
        if how == "hangs up":
            server.inbox.hang_up_after_data = True
            kept.send(build_message(mail("b@harbor.example")))
            server.inbox.hang_up_after_data = False
            time.sleep(0.3)  # the server has closed the connection kept for the next message
        else:
            server.inbox.closing_on_mail = 1
        kept.send(build_message(mail("c@harbor.example")))
        kept.send(build_message(mail("d@harbor.example")))
    sent = [m.rcpt_tos[0].split("@")[0] for m in server.inbox.messages]
    assert sent == (["a", "b", "c", "d"] if how == "hangs up" else ["a", "c", "d"])
    assert server.inbox.ehlos == 2  # the first connection, and the one after the server closed


def test_a_refused_recipient_on_a_kept_connection_is_a_bounce_not_a_second_try(tmp_path):
    with smtp_server(tmp_path) as server, SmtpTransport(server.url, keep_open=True) as kept:
        kept.send(build_message(mail("a@harbor.example")))
        with pytest.raises(MailBounced):
            kept.send(build_message(mail("bounce@harbor.example")))
        with pytest.raises(Transient, match="451"):
            kept.send(build_message(mail("later@harbor.example")))
        kept.send(build_message(mail("b@harbor.example")))
    assert [m.rcpt_tos for m in server.inbox.messages] == [
        ["a@harbor.example"],
        ["b@harbor.example"],
    ]
