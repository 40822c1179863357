"""What the SMS parts of the owner's pages show: how texts are set up, the wording with its
length, and customers' text replies waiting for the owner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.collections.reminder_policy import SequenceError, reminder_policy
from arbridge.collections.sms import DEFAULT_SMS_TEMPLATE, SmsLength, sms_sample
from arbridge.runtime import Runtime
from arbridge.services.messaging.sms import WEBHOOK_PATH, simulated_sms
from arbridge.sync.model import Company, Customer, SmsAccount, SmsReply


@dataclass(frozen=True)
class SmsSetup:
    """How this business's texts go out (the settings page)."""

    mode: str  # "own", "install", "simulated" or "none"
    account: str | None  # the account SID, shortened
    sender: str | None
    webhook_url: str


@dataclass(frozen=True)
class SmsWording:
    """The wording of a text and its length with a sample customer (no database read: the
    reminders page shows it beside its own reads)."""

    wording: str
    default_wording: str
    sample: str | None
    length: SmsLength | None
    problem: str | None


def sms_setup(s: Session, rt: Runtime, company: Company) -> SmsSetup:
    own = s.scalar(select(SmsAccount).where(SmsAccount.company_id == company.id))
    install = rt.settings.twilio
    mode, account, sender = "none", None, None
    if own is not None:
        mode, account = "own", own.account_sid
        sender = own.messaging_service_sid or own.from_number
    elif install is not None and install.configured:
        mode, account = "install", install.account_sid
        sender = install.messaging_service_sid or install.from_number
    elif simulated_sms(s, company.id):
        mode = "simulated"
    return SmsSetup(
        mode=mode,
        account=f"{account[:6]}…{account[-4:]}" if account else None,
        sender=sender,
        webhook_url=f"{rt.settings.base_url}{WEBHOOK_PATH}",
    )


def sms_wording(company: Company) -> SmsWording:
    try:
        wording = reminder_policy(company.settings).sms_template
    except SequenceError:
        wording = ""
    sample, length, problem = sms_sample(wording)
    return SmsWording(
        wording=wording,
        default_wording=DEFAULT_SMS_TEMPLATE,
        sample=sample,
        length=length,
        problem=problem,
    )


def waiting_replies(s: Session, company_id: int, limit: int = 100) -> list[tuple[SmsReply, Any]]:
    return [
        (reply, name)
        for reply, name in s.execute(
            select(SmsReply, Customer.name)
            .outerjoin(Customer, Customer.id == SmsReply.customer_id)
            .where(SmsReply.company_id == company_id, SmsReply.handled_at.is_(None))
            .order_by(SmsReply.received_at.desc())
            .limit(limit)
        ).tuples()
    ]
