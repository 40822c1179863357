"""What reminders hand to messaging: the re-check and composition of their messages."""

from __future__ import annotations

from arbridge.services.messaging.sender import Preparer
from arbridge.services.reminders.reminder_email import prepare_reminder
from arbridge.services.reminders.statements import prepare_statement


def preparers() -> dict[str, Preparer]:
    return {"reminder": prepare_reminder, "statement": prepare_statement}
