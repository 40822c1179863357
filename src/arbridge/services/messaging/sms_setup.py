"""What the owner sets up for texts: the business's own Twilio account (its auth token
encrypted like every other secret), consent to text a contact (with a note), and a contact's
number, read into E.164 again whenever it changes."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.collections.sms import parse_phone
from arbridge.runtime import Runtime
from arbridge.sync.model import Company, Contact, Customer, SmsAccount
from arbridge.sync.store import log_activity

ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
MAX_NOTE = 500


class SmsSetupError(ValueError):
    """A value the owner typed that cannot be used; the message is for them."""


def save_sms_account(
    session: Session,
    rt: Runtime,
    company: Company,
    account_sid: str,
    auth_token: str,
    sender: str,
) -> SmsAccount:
    """The business's own Twilio account. `sender` is a Messaging Service SID (MG...) or a
    phone number (read into E.164 in the business's country). An empty token keeps the one
    already stored."""
    account_sid, auth_token, sender = account_sid.strip(), auth_token.strip(), sender.strip()
    if not ACCOUNT_SID.match(account_sid):
        raise SmsSetupError("The Account SID starts with AC and has 34 characters.")
    service, number = None, None
    if SERVICE_SID.match(sender):
        service = sender
    else:
        phone = parse_phone(sender, company.country)
        if phone.e164 is None and not (sender and parse_phone(sender, None).e164):
            raise SmsSetupError(
                "Give a Messaging Service SID (MG...) or the Twilio number to send from."
            )
        number = phone.e164 or parse_phone(sender, None).e164
    own = session.scalar(select(SmsAccount).where(SmsAccount.company_id == company.id))
    if not auth_token and (own is None or own.account_sid != account_sid):
        raise SmsSetupError("Give the account's Auth Token.")
    if len(auth_token) > 200 or any(c.isspace() for c in auth_token):
        raise SmsSetupError("That Auth Token does not look right.")
    if own is None:
        own = SmsAccount(company_id=company.id, created_at=rt.clock.now())
        session.add(own)
    if auth_token:
        own.credentials_encrypted = rt.keyring.encrypt(auth_token)
    own.account_sid, own.messaging_service_sid, own.from_number = account_sid, service, number
    log_activity(
        session,
        rt.clock,
        company.id,
        "sms.account_saved",
        f"Texts go through the Twilio account {account_sid[:6]}… from {service or number}",
    )
    return own


def remove_sms_account(session: Session, rt: Runtime, company: Company) -> bool:
    own = session.scalar(select(SmsAccount).where(SmsAccount.company_id == company.id))
    if own is None:
        return False
    session.delete(own)
    log_activity(session, rt.clock, company.id, "sms.account_removed", "Twilio account removed")
    return True


def set_consent(
    session: Session, rt: Runtime, contact: Contact, given: bool, note: str, by: str | None
) -> None:
    """The owner records (with a note: how and when the customer agreed) or withdraws consent
    to text a contact."""
    note = note.strip()
    if given and not note:
        raise SmsSetupError("Say how the customer agreed to texts (a note is kept with it).")
    if len(note) > MAX_NOTE:
        raise SmsSetupError(f"The note has at most {MAX_NOTE} characters.")
    if given:
        contact.sms_consent_at = rt.clock.now()
        contact.sms_consent_source = "owner"
        contact.sms_consent_note = note + (f" (recorded by {by})" if by else "")
    else:
        contact.sms_consent_at, contact.sms_consent_source = None, None
        contact.sms_consent_note = f"withdrawn: {note}" if note else None
    log_activity(
        session,
        rt.clock,
        contact.company_id,
        "sms.consent" if given else "sms.consent_withdrawn",
        f"Consent to text {contact.phone_e164 or contact.phone or 'the contact'} "
        + ("recorded" if given else "withdrawn")
        + (f": {note}" if note else ""),
        customer_id=contact.customer_id,
    )


def update_phone(session: Session, contact: Contact) -> None:
    """After the phone changed: read it into E.164 again; a new number starts over (no STOP,
    no carrier refusal carried over from the old one)."""
    customer = session.get(Customer, contact.customer_id)
    company = session.get(Company, contact.company_id)
    country = (customer.country if customer else None) or (company.country if company else None)
    phone = parse_phone(contact.phone, country)
    if phone.e164 != contact.phone_e164:
        contact.sms_opted_out_at, contact.sms_undeliverable_at = None, None
    contact.phone_e164, contact.phone_problem = phone.e164, phone.problem if contact.phone else None
