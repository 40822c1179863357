"""What reminders hand to messaging (the re-check and composition of their messages) and to the
webhook inbox (Twilio's replies and status callbacks to their texts)."""

from __future__ import annotations

from arbridge.runtime import Runtime
from arbridge.services.messaging.sender import Fallback, Preparer
from arbridge.services.reminders.recheck import SMS_MAIL
from arbridge.services.reminders.reminder_email import prepare_reminder
from arbridge.services.reminders.statements import prepare_statement
from arbridge.services.reminders.text_replies import twilio_handlers
from arbridge.services.reminders.texts import fall_back_to_email, prepare_text
from arbridge.webhooks.dispatch import EventHandler


def preparers() -> dict[str, Preparer]:
    return {"reminder": prepare_reminder, "statement": prepare_statement, SMS_MAIL: prepare_text}


def fallbacks() -> dict[str, Fallback]:
    """A reminder text whose number cannot take texts goes by email."""
    return {SMS_MAIL: fall_back_to_email}


def webhook_events(rt: Runtime) -> dict[tuple[str, str], EventHandler]:
    """Twilio's events: STOP, START and other replies; status callbacks of the texts sent."""
    return twilio_handlers(rt)
