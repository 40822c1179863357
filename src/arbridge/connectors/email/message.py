"""One email as arbridge sends it: plain text and HTML alternatives, and the headers mail
providers look for before they trust bulk mail (RFC 8058 one-click unsubscribe, Message-ID)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr


@dataclass(frozen=True)
class Attachment:
    """A file the email carries (a statement or a letter as PDF)."""

    filename: str
    content_type: str  # "application/pdf"
    data: bytes


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    mail_from: str
    sent_at: datetime
    html: str | None = None
    from_name: str | None = None  # the business's name, shown as the sender
    reply_to: str | None = None  # the business's own address: replies go to the business
    unsubscribe_url: str | None = None
    message_id: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()


def _domain(address: str) -> str:
    _name, addr = parseaddr(address)
    return addr.rpartition("@")[2] or "arbridge.invalid"


def new_message_id(mail_from: str) -> str:
    return make_msgid(domain=_domain(mail_from))


def _clean(value: str) -> str:
    # Header injection: a name or subject with a line break must not add headers.
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def build_message(mail: OutgoingEmail) -> EmailMessage:
    msg = EmailMessage()
    _name, from_addr = parseaddr(mail.mail_from)
    if "@" not in from_addr:
        raise ValueError(f"the sender address {mail.mail_from!r} is not an email address")
    if mail.from_name:
        user, _, domain = from_addr.partition("@")
        msg["From"] = Address(_clean(mail.from_name), user, domain)
    else:
        msg["From"] = from_addr
    msg["To"] = _clean(mail.to)
    if mail.reply_to:
        msg["Reply-To"] = _clean(mail.reply_to)
    msg["Subject"] = _clean(mail.subject)
    msg["Date"] = format_datetime(mail.sent_at)
    msg["Message-ID"] = mail.message_id or new_message_id(mail.mail_from)
    if mail.unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{mail.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    for name, value in mail.extra_headers.items():
        msg[name] = _clean(value)
    msg.set_content(mail.text)
    if mail.html:
        msg.add_alternative(mail.html, subtype="html")
    for item in mail.attachments:
        maintype, _, subtype = item.content_type.partition("/")
        msg.add_attachment(
            item.data, maintype=maintype, subtype=subtype, filename=_clean(item.filename)
        )
    return msg
