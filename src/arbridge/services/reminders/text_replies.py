"""What Twilio tells us at POST /webhooks/twilio: verified, stored once in the webhook inbox,
then handled from the stored event. A customer's STOP opts the number out of texts and START
back in; any other reply waits in the owner's replies list; a status callback updates the text
in the mailbox, and a number the carrier refuses is marked, with the step sent by email instead.

A STOP must hold at once (a text queued for that number is re-checked before it goes), so the
request's own event is handled as soon as it is stored, by the same handler the worker runs; if
that fails it stays pending for the worker. A delivery Twilio repeats is stored once and acted
on once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.collections.sms import parse_phone, reply_keyword
from arbridge.connectors.twilio import UNDELIVERABLE_CODES
from arbridge.errors import SignatureInvalid
from arbridge.runtime import Runtime
from arbridge.services.messaging.outgoing import SMS_CHANNEL
from arbridge.services.messaging.sender import mark_undeliverable
from arbridge.services.reminders.texts import fall_back_to_email
from arbridge.sync.db import dialect_insert, transaction
from arbridge.sync.model import (
    Company,
    Contact,
    MailMessage,
    OutboxMessage,
    ReminderSend,
    SmsAccount,
    SmsReply,
    WebhookEvent,
)
from arbridge.sync.store import log_activity
from arbridge.webhooks.dispatch import EventHandler, process_now
from arbridge.webhooks.inbox import Stored, store
from arbridge.webhooks.twilio import (
    INBOUND,
    PROVIDER,
    STATUS,
    STATUS_RANK,
    TwilioRequest,
    from_event,
    parse_twilio,
    twilio_event,
    verify_twilio_signature,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Signer:
    token: str
    company_ids: tuple[int, ...] | None  # None: every business on the install's account


def _signers(rt: Runtime, session: Session, account_sid: str) -> list[Signer]:
    """The tokens that may have signed a request from this Twilio account, and whose it is."""
    own = session.scalars(select(SmsAccount).where(SmsAccount.account_sid == account_sid)).all()
    found = [Signer(rt.keyring.decrypt(a.credentials_encrypted), (a.company_id,)) for a in own]
    install = rt.settings.twilio
    if install is not None and install.configured and install.account_sid == account_sid:
        assert install.auth_token
        found.append(Signer(install.auth_token, None))
    return found


def ingest_twilio(
    rt: Runtime,
    url: str,
    form: Sequence[tuple[str, str]],
    signature: str | None,
) -> Stored:
    """Verify one request and store it once; nothing unverified or malformed is stored.

    MalformedTwilio when the form is not Twilio's, SignatureInvalid when no token of the
    account it names signed it. The delivery keeps the form as Twilio posted it, encoded again
    (Flask has read the body by the time a view runs)."""
    request = parse_twilio(url, form)
    with transaction(rt.sessions) as session:
        signers = _signers(rt, session, request.account_sid)
        signer = None
        for candidate in signers:
            try:
                verify_twilio_signature(url, form, signature, candidate.token)
            except SignatureInvalid:
                continue
            signer = candidate
            break
        if signer is None:
            if not signers:
                raise SignatureInvalid("no Twilio account here has that account SID")
            raise SignatureInvalid("the X-Twilio-Signature does not match the URL and form")
        raw = urlencode(list(form)).encode()
        headers = {"x-twilio-signature": signature or ""}
        event = twilio_event(request, signer.company_ids)
        return store(session, rt.clock, PROVIDER, headers, raw, [event])


def receive_twilio(
    rt: Runtime,
    url: str,
    form: Sequence[tuple[str, str]],
    signature: str | None,
) -> str:
    """Verify and store one request, then handle its event at once; returns what was done (for
    the log and the tests): "duplicate" for a delivery already stored, "queued" when the
    worker has it, "pending" or "failed" when handling it failed (the worker retries; an
    operator replays a failed one with `arbridge events replay`)."""
    stored = ingest_twilio(rt, url, form, signature)
    if not stored.event_ids:
        return "duplicate"
    done = process_now(rt.sessions, rt.clock, twilio_handlers(rt), stored.event_ids)
    status, outcome = done.get(stored.event_ids[0], ("queued", None))
    return str(outcome) if status == "processed" else status


def twilio_handlers(rt: Runtime) -> dict[tuple[str, str], EventHandler]:
    """The inbox's handlers of Twilio's events (registered with the worker's too)."""
    return {
        (PROVIDER, INBOUND): lambda s, e: handle_twilio_inbound(rt, s, e),
        (PROVIDER, STATUS): lambda s, e: handle_twilio_status(rt, s, e),
    }


def handle_twilio_inbound(rt: Runtime, session: Session, event: WebhookEvent) -> str:
    request, signed_for = from_event(event.payload)
    outcome = _reply(session, rt, request, signed_for)
    log.info("Twilio message %s: %s", request.message_sid, outcome)
    return outcome


def handle_twilio_status(rt: Runtime, session: Session, event: WebhookEvent) -> str:
    request, signed_for = from_event(event.payload)
    outcome = _status(session, rt, request, signed_for)
    log.info("Twilio status %s for %s: %s", request.status, request.message_sid, outcome)
    return outcome


def _status(
    session: Session, rt: Runtime, r: TwilioRequest, signed_for: tuple[int, ...] | None
) -> str:
    text = None
    if r.key:
        text = session.scalar(
            select(MailMessage).where(
                MailMessage.outbox_key == r.key, MailMessage.channel == SMS_CHANNEL
            )
        )
    if text is None and r.message_sid:
        text = session.scalar(select(MailMessage).where(MailMessage.message_id == r.message_sid))
    if text is not None and not _ours(text.company_id, signed_for):
        # Signed by a business's own account, about another's text: that account never sent it.
        log.warning("Twilio status for text %s refused: not its account's", r.message_sid)
        return "not ours"
    if text is None:
        # Twilio took the text but our record of it is not written (a crash in between, or the
        # callback outran us): keep its SID where the retry looks first, so it is not resent.
        outbox = (
            session.scalar(select(OutboxMessage).where(OutboxMessage.key == r.key))
            if r.key
            else None
        )
        if outbox is None or not _ours(outbox.company_id, signed_for):
            log.info("Twilio status %s for an unknown text %s", r.status, r.message_sid)
            return "unknown text"
        attempt = dict(outbox.payload.get("sms_attempt") or {})
        attempt.update(sid=r.message_sid, status=r.status)
        outbox.payload = {**outbox.payload, "sms_attempt": attempt}
        return "remembered"
    if STATUS_RANK.get(r.status, 0) >= STATUS_RANK.get(text.delivery_status or "", 0):
        text.delivery_status, text.error_code = r.status[:20], (r.error_code or None)
        text.status_at = rt.clock.now()
        if text.message_id.startswith("pending:"):
            text.message_id = r.message_sid
    if r.status in ("undelivered", "failed") and _undeliverable(r.error_code):
        why = f"Twilio error {r.error_code} ({r.status})"
        contact = session.get(Contact, text.contact_id) if text.contact_id else None
        if contact is not None and contact.sms_undeliverable_at is None:
            mark_undeliverable(session, rt, text.company_id, contact.id, text.to_addr, why)
        if text.outbox_key:
            for row in session.scalars(
                select(ReminderSend).where(ReminderSend.outbox_key == text.outbox_key)
            ):
                row.status, row.note = "failed", why
            fall_back_to_email(session, rt, text.company_id, text.outbox_key)
        return "undeliverable"
    return r.status or "status"


def _undeliverable(code: str | None) -> bool:
    try:
        return code is not None and int(code) in UNDELIVERABLE_CODES
    except ValueError:
        return False


def _ours(company_id: int, signed_for: tuple[int, ...] | None) -> bool:
    return signed_for is None or company_id in signed_for


def _reply(
    session: Session, rt: Runtime, r: TwilioRequest, signed_for: tuple[int, ...] | None
) -> str:
    number = parse_phone(r.from_number, None).e164 or r.from_number[:16]
    query = select(Contact).where(Contact.phone_e164 == number)
    if signed_for is not None:
        query = query.where(Contact.company_id.in_(signed_for))
    contacts = session.scalars(query).all()
    keyword = reply_keyword(r.body)
    now = rt.clock.now()
    if keyword == "stop":
        for c in contacts:
            if c.sms_opted_out_at is None:
                c.sms_opted_out_at = now
                log_activity(
                    session,
                    rt.clock,
                    c.company_id,
                    "sms.opted_out",
                    f"{number} replied {r.body.strip()[:20]}: no more texts to this number",
                    customer_id=c.customer_id,
                )
        return "opted out"
    if keyword == "start":
        for c in contacts:
            if c.sms_opted_out_at is not None:
                c.sms_opted_out_at = None
                log_activity(
                    session,
                    rt.clock,
                    c.company_id,
                    "sms.opted_in",
                    f"{number} replied START: texts may go to this number again",
                    customer_id=c.customer_id,
                )
        return "opted in"
    if keyword == "help":
        return "help"  # Twilio answers HELP itself
    companies: dict[int, Contact | None] = {c.company_id: c for c in contacts}
    if not companies and signed_for is not None:
        # A number we do not know, on a business's own account: still that business's reply.
        companies = dict.fromkeys(signed_for)
    for company_id, contact in companies.items():
        if session.get(Company, company_id) is None:
            continue
        session.execute(
            dialect_insert(session)(SmsReply.__table__)
            .values(
                company_id=company_id,
                customer_id=contact.customer_id if contact else None,
                contact_id=contact.id if contact else None,
                message_sid=r.message_sid[:64],
                from_number=number,
                body=r.body[:2000],
                received_at=now,
            )
            .on_conflict_do_nothing(index_elements=["company_id", "message_sid"])
        )
    if not companies:
        log.warning("a text from %s matched no customer; not kept", number)
        return "unmatched"
    return "reply"
