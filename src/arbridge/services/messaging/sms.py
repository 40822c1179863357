"""The SMS channel: Twilio (the business's own account, else the install's), or in the demo a
simulated carrier whose texts land in the mailbox.

Exactly once without an idempotency key: before a text goes to Twilio, its body and the time
are written to its outbox row (committed); a retry after a crash between Twilio's accept and our
record finds them there and asks Twilio for that text (`TwilioSms.find`) before sending again.
When Twilio cannot be asked, the text is recorded "maybe sent" and never repeated. The outbox
key also rides in the StatusCallback URL, so Twilio's delivery reports name the message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from arbridge.collections.reminders import SMS_NOT_CONFIGURED
from arbridge.collections.sms import sms_length
from arbridge.connectors.twilio import (
    SmsConfigError,
    SmsMaybeSent,
    SmsUndeliverable,
    TwilioAccount,
    TwilioSms,
)
from arbridge.runtime import Runtime
from arbridge.services.messaging.channel import Composed, Transmitted
from arbridge.services.messaging.outgoing import SMS_CHANNEL, Prepared
from arbridge.sync.db import among, transaction
from arbridge.sync.model import OutboxMessage, SmsAccount
from arbridge.sync.outbox_kinds import OutboxKind
from arbridge.sync.store import LedgerState, ledger_connection

WEBHOOK_PATH = "/webhooks/twilio"
SIMULATED = "simulated"


def sms_account(rt: Runtime, session: Session, company_id: int) -> TwilioAccount | None:
    """The business's own Twilio account, else the install's; None when neither is set."""
    install = rt.settings.twilio
    base = install.api_base if install is not None else None
    own = session.scalar(select(SmsAccount).where(SmsAccount.company_id == company_id))
    if own is not None:
        return TwilioAccount(
            own.account_sid,
            rt.keyring.decrypt(own.credentials_encrypted),
            own.messaging_service_sid,
            own.from_number,
            base,
        )
    if install is not None and install.configured:
        assert install.account_sid and install.auth_token
        return TwilioAccount(
            install.account_sid,
            install.auth_token,
            install.messaging_service_sid,
            install.from_number,
            base,
        )
    return None


def simulated_sms(session: Session, company_id: int) -> bool:
    """The demo texts through a simulated carrier (its texts appear in the mailbox)."""
    conn = ledger_connection(session, company_id)
    return conn is not None and conn.provider == "demo"


def sms_unavailable(rt: Runtime, session: Session, company_id: int) -> str | None:
    """Why no text can go for this business (None: Twilio, or the demo's simulation)."""
    if sms_account(rt, session, company_id) is not None or simulated_sms(session, company_id):
        return None
    return SMS_NOT_CONFIGURED


def sms_unavailable_of(
    rt: Runtime,
    session: Session,
    company_ids: Sequence[int],
    connections: Mapping[int, LedgerState],
) -> dict[int, str | None]:
    """`sms_unavailable` of many businesses in at most one query (`connections`: their ledger
    connections, as `sync.store.ledger_connections` or `ledger_states` read them)."""
    install = rt.settings.twilio
    if install is not None and install.configured:
        return dict.fromkeys(company_ids)
    own = set(
        session.scalars(
            select(SmsAccount.company_id).where(among(session, SmsAccount.company_id, company_ids))
        )
    )
    return {
        c: None
        if c in own or (c in connections and connections[c].provider == "demo")
        else SMS_NOT_CONFIGURED
        for c in company_ids
    }


def status_callback_url(rt: Runtime, key: str) -> str:
    """Where Twilio reports the text's delivery: our webhook, naming the outbox key."""
    return f"{rt.settings.base_url}{WEBHOOK_PATH}?{urlencode({'key': key})}"


class SmsChannel:
    name = SMS_CHANNEL
    outbox_kind = OutboxKind.SMS
    undeliverable: tuple[type[Exception], ...] = (SmsUndeliverable,)
    maybe_sent: tuple[type[Exception], ...] = (SmsMaybeSent,)
    misconfigured: tuple[type[Exception], ...] = (SmsConfigError,)

    def compose(self, rt: Runtime, prepared: Prepared, message: OutboxMessage) -> Composed:
        body = prepared.rendered.text
        length = sms_length(body)
        return Composed(
            message_id=f"pending:{message.key}"[:250],
            headers={
                "To": prepared.to,
                "Encoding": length.encoding,
                "Segments": str(length.segments),
                "Characters": str(length.characters),
            },
            native={
                "outbox_id": message.id,
                "company_id": message.company_id,
                "key": message.key,
                "to": prepared.to,
                "body": body,
            },
        )

    def transmit(self, rt: Runtime, composed: Composed) -> Transmitted:
        sms: dict[str, Any] = composed.native
        with rt.sessions() as session:
            account = sms_account(rt, session, sms["company_id"])
            simulated = account is None and simulated_sms(session, sms["company_id"])
        if account is None:
            if simulated:
                digest = hashlib.sha256(sms["key"].encode()).hexdigest()[:32]
                return Transmitted(SIMULATED, f"SMsim{digest}", status="delivered")
            raise SmsConfigError(SMS_NOT_CONFIGURED)
        client = TwilioSms(account)
        prior = _prior_attempt(rt, sms["outbox_id"])
        if prior is not None and prior.get("sid"):
            # Twilio's status callback named the text an interrupted attempt sent.
            return Transmitted(
                "twilio", prior["sid"], status=prior.get("status"), text=prior["body"]
            )
        if prior is not None:
            # An earlier attempt may have reached Twilio: find it before sending again.
            found = client.find(sms["to"], prior["body"], datetime.fromisoformat(prior["at"]))
            if found is not None:
                return Transmitted("twilio", found.sid, status=found.status, text=found.body)
        _remember_attempt(rt, sms["outbox_id"], sms["body"])
        sent = client.send(sms["to"], sms["body"], status_callback_url(rt, sms["key"]))
        return Transmitted("twilio", sent.sid, status=sent.status)

    def maybe_sent_transport(self, rt: Runtime) -> str:
        return "sms-maybe"


def _prior_attempt(rt: Runtime, outbox_id: int) -> dict[str, str] | None:
    with rt.sessions() as session:
        row = session.get(OutboxMessage, outbox_id)
        attempt = row.payload.get("sms_attempt") if row is not None else None
    return attempt if isinstance(attempt, dict) else None


def _remember_attempt(rt: Runtime, outbox_id: int, body: str) -> None:
    """Committed before the request leaves: what a retry looks for at Twilio."""
    with transaction(rt.sessions) as session:
        row = session.get(OutboxMessage, outbox_id)
        assert row is not None
        row.payload = {
            **row.payload,
            "sms_attempt": {"body": body, "at": rt.clock.now().isoformat()},
        }


SMS = SmsChannel()
