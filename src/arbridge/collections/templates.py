"""Reminder email templates: the wording arbridge ships, and the owner's own, rendered sandboxed.

Templates are Jinja run in `SandboxedEnvironment` (an owner's template can read the merge fields
and nothing else of the process), the HTML part autoescaped. Pure: strings in, strings out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

MERGE_FIELDS = (
    "customer_name",
    "contact_name",
    "invoice_number",
    "amount_due",
    "due_date",
    "days_overdue",
    "pay_link",
    "statement_link",
    "business_name",
    "signature",
    "unsubscribe_link",
    "invoices",  # a list of {number, amount_due, due_date, days_overdue, pay_link}
    "total_due",
)


class TemplateProblem(ValueError):
    """A template that does not render; the message is one sentence for the owner."""


@dataclass(frozen=True)
class EmailTemplate:
    subject: str
    text: str
    html: str | None = None  # None: the plain text, escaped, in paragraphs


_TABLE_TEXT = (
    "{% for i in invoices %}  - Invoice {{ i.number }}: {{ i.amount_due }}, due {{ i.due_date }}"
    "{% if i.days_overdue > 0 %} ({{ i.days_overdue }} days overdue){% endif %}\n"
    "    Pay online: {{ i.pay_link }}\n{% endfor %}"
)
_CLOSING = (
    "\nIf you have already paid, thank you, and please ignore this message. If something is not "
    "right with the invoice, reply to this email or use the link above to tell us.\n\n"
    "{{ signature or ('Kind regards,\\n' ~ business_name) }}\n"
)

DEFAULT_TEMPLATES: dict[str, EmailTemplate] = {
    "upcoming": EmailTemplate(
        "Upcoming: invoice {{ invoice_number }} from {{ business_name }} is due {{ due_date }}",
        "Hello {{ contact_name or customer_name }},\n\n"
        "A friendly heads-up that the following will be due soon:\n\n" + _TABLE_TEXT + _CLOSING,
    ),
    "due_today": EmailTemplate(
        "Invoice {{ invoice_number }} from {{ business_name }} is due today",
        "Hello {{ contact_name or customer_name }},\n\n"
        "Just a reminder that the following is due today:\n\n" + _TABLE_TEXT + _CLOSING,
    ),
    "overdue_friendly": EmailTemplate(
        "Reminder: invoice {{ invoice_number }} from {{ business_name }} is now overdue",
        "Hello {{ contact_name or customer_name }},\n\n"
        "We haven't received payment for the following yet. It may simply have slipped "
        "through; you can pay online in a minute:\n\n" + _TABLE_TEXT + _CLOSING,
    ),
    "overdue": EmailTemplate(
        "Second reminder: {{ total_due }} overdue to {{ business_name }}",
        "Hello {{ contact_name or customer_name }},\n\n"
        "Our records show the following still unpaid. Please arrange payment, or let us know "
        "when we can expect it:\n\n" + _TABLE_TEXT + _CLOSING,
    ),
    "overdue_firm": EmailTemplate(
        "Action needed: {{ total_due }} overdue to {{ business_name }}",
        "Hello {{ contact_name or customer_name }},\n\n"
        "Despite our earlier reminders, the following remains unpaid. Please pay it now, or "
        "reply within 7 days to agree a date or a payment plan:\n\n" + _TABLE_TEXT + _CLOSING,
    ),
    "final_notice": EmailTemplate(
        "Final notice: {{ total_due }} overdue to {{ business_name }}",
        "Hello {{ contact_name or customer_name }},\n\n"
        "This is our final reminder before we take further steps to recover the amount below, "
        "which may include referring the account to a collection agency. Please pay now, or "
        "contact us today:\n\n" + _TABLE_TEXT + _CLOSING,
    ),
    "statement": EmailTemplate(
        "Your statement from {{ business_name }}: {{ total_due }} open",
        "Hello {{ contact_name or customer_name }},\n\n"
        "Here is your statement of open invoices:\n\n" + _TABLE_TEXT + "\n"
        "Pay them all together: {{ statement_link }}\n" + _CLOSING,
    ),
}

CALL_GUIDE = (
    (
        "The cheque is in the post.",
        "Ask for the date it was sent and the cheque number; "
        "note a promise to pay for a week from then.",
    ),
    (
        "We never got the invoice.",
        "Confirm the email address, resend it with the payment link "
        "while on the phone, and agree a date.",
    ),
    (
        "We're waiting for approval.",
        "Ask who approves and when; offer to send the invoice to them directly.",
    ),
    ("We can't pay it all now.", "Offer an installment plan and send the plan link."),
    (
        "There's a problem with the invoice.",
        "Record it as a dispute so reminders stop, and fix or credit the invoice.",
    ),
)

_ENV = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
_HTML_ENV = SandboxedEnvironment(
    autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True
)


def template_for(name: str, overrides: Mapping[str, Mapping[str, str]] | None) -> EmailTemplate:
    own = (overrides or {}).get(name)
    if own:
        return EmailTemplate(own["subject"], own["text"], own.get("html") or None)
    return DEFAULT_TEMPLATES.get(name) or DEFAULT_TEMPLATES["overdue"]


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(template: EmailTemplate, fields: Mapping[str, Any]) -> Rendered:
    try:
        subject = " ".join(_ENV.from_string(template.subject).render(fields).split())
        text = _ENV.from_string(template.text).render(fields)
        if template.html:
            html = _HTML_ENV.from_string(template.html).render(fields)
        else:
            html = _HTML_ENV.from_string(_TEXT_AS_HTML).render(text=text)
    except TemplateError as e:
        raise TemplateProblem(f"the template does not render: {e.message or e}") from e
    text += "\nTo stop these reminders: {}\n".format(fields.get("unsubscribe_link", ""))
    html += _HTML_ENV.from_string(_FOOTER).render(fields)
    return Rendered(subject[:250], text, html)


def check(template: EmailTemplate, sample: Mapping[str, Any]) -> None:
    """Raise TemplateProblem if the template would not render with these fields."""
    render(template, sample)


_TEXT_AS_HTML = (
    '<!doctype html><html><body style="font-family:sans-serif;line-height:1.5">'
    "{% for para in text.split('\\n\\n') %}<p>{{ para | replace('\\n', '<br>'|safe) }}</p>"
    "{% endfor %}"
)
_FOOTER = (
    '<p style="color:#777;font-size:12px">To stop these reminders, '
    '<a href="{{ unsubscribe_link }}">unsubscribe</a>.</p></body></html>'
)
