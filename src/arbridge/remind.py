"""Reminders under their old import path (`arbridge.remind.X` keeps working): the code lives in
`arbridge.services.reminders` (deciding and queueing) and `arbridge.services.messaging`
(sending)."""

from arbridge.services.messaging.email import mail_from
from arbridge.services.messaging.sender import send_email
from arbridge.services.reminders.case_file import case_file
from arbridge.services.reminders.facts import Loaded, load_day
from arbridge.services.reminders.holds import record_hold, reply_limit_reached, resolve_hold
from arbridge.services.reminders.preview import Preview, preview, preview_lines
from arbridge.services.reminders.rendering import merge_fields, render_reminder, statement_link_days
from arbridge.services.reminders.run import RunResult, refer_to_agency, run_reminders
from arbridge.services.reminders.statements import queue_statements
from arbridge.services.reminders.unsubscribe import (
    contact_for_unsubscribe,
    unsubscribe,
    unsubscribe_token,
)

__all__ = [
    "Loaded",
    "Preview",
    "RunResult",
    "case_file",
    "contact_for_unsubscribe",
    "load_day",
    "mail_from",
    "merge_fields",
    "preview",
    "preview_lines",
    "queue_statements",
    "record_hold",
    "refer_to_agency",
    "render_reminder",
    "reply_limit_reached",
    "resolve_hold",
    "run_reminders",
    "send_email",
    "statement_link_days",
    "unsubscribe",
    "unsubscribe_token",
]
