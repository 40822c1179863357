"""Reminder email templates: the wording arbridge ships, and the owner's own, rendered sandboxed.

Templates are Jinja run in `SandboxedEnvironment` (an owner's template can read the merge fields
and nothing else of the process), the HTML part autoescaped. Pure: strings in, strings out.

Rendering is bounded, because a template is code the owner (or whoever takes over their session)
writes and the worker runs: a time limit checked on every line the compiled template runs (so
nested loops stop), a cap on the output, and the operations that allocate in one step (`*`, `**`,
`%`, `str.format`, `range`, padding filters, `lipsum`) refused when they would build something
larger than that cap.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from types import FrameType
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import escape

TIME_LIMIT = 2.0  # seconds for one email (subject, text and HTML); ordinary ones take a few ms
MAX_OUTPUT = 1_000_000  # characters per part: a statement of a thousand invoices fits easily
MAX_RANGE = 10_000
_BIG_WIDTH = re.compile(r"%[-#0 +]*(\*|\d{5,})|%[-#0 +]*\d*\.(\*|\d{5,})")
_BIG_FORMAT_SPEC = re.compile(r"\{[^{}]*:[^{}]*(\{|\d{5,})")
_SIZED_FILTERS = ("center", "indent", "wordwrap", "truncate", "batch", "slice")

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
    # a list of {number, amount_due, due_date, days_overdue, pay_link, late_fees, viewed_on}
    "invoices",
    "total_due",
    "total_overdue",  # of those invoices, the ones past their due date on the email's day
    "late_fees",  # late fees and interest charged on these invoices ("" when none)
    "payment_terms",  # the late-fee policy in words ("" when there is none)
    "viewed_on",  # the day the customer first opened the invoice's page ("" when never)
    # worked out from the others (derived_fields)
    "greeting_name",
    "invoice_list",
    "fees_and_terms",
    "sign_off",
)


class TemplateProblem(ValueError):
    """A template that does not render; the message is one sentence for the owner."""


@dataclass(frozen=True)
class EmailTemplate:
    subject: str
    text: str
    html: str | None = None  # None: the plain text, escaped, in paragraphs


# Fields arbridge works out from the others (`derived_fields`), so a wording needs no template
# syntax for the parts that vary: the invoice list, the fee note, the sign-off.
DERIVED_FIELDS = ("greeting_name", "invoice_list", "fees_and_terms", "sign_off")

# The merge fields an owner inserts from the editor, with what each one says. `invoices` (a
# list) and the control syntax are for the advanced editor only.
MERGE_FIELD_LABELS: dict[str, str] = {
    "greeting_name": "Name to greet (the contact, else the customer)",
    "customer_name": "Customer's name",
    "contact_name": "Contact's name",
    "invoice_number": "Invoice number",
    "amount_due": "Amount due",
    "due_date": "Due date",
    "days_overdue": "Days overdue",
    "total_due": "Total due",
    "total_overdue": "Total overdue (leaves out what is not due yet)",
    "invoice_list": "The invoices, each with its pay link",
    "pay_link": "Pay link",
    "statement_link": "Statement link (pays them all)",
    "fees_and_terms": "Late fees and payment terms (empty when none)",
    "late_fees": "Late fees charged",
    "payment_terms": "Payment terms",
    "viewed_on": "Day they first opened the invoice",
    "business_name": "Your business's name",
    "sign_off": 'Sign-off (your signature, else "Kind regards")',
    "signature": "Your signature",
}

_CLOSING = (
    "{{ fees_and_terms }}"
    "\nIf you have already paid, thank you, and please ignore this message. If something is not "
    "right with the invoice, reply to this email or use the link above to tell us.\n\n"
    "{{ sign_off }}\n"
)


def template_on(template: str, due_dates: Iterable[date], today: date) -> str:
    """The wording an email of `template` about invoices due on `due_dates` goes out in on
    `today`: the steps before and on the due date speak of a day still to come or of today, and
    an email that goes out later than its step (the sending window's next morning, a weekend, a
    worker that was down) must not say "due today" of an overdue invoice. Such an email is
    worded as the first overdue step; an upcoming one that goes out on the due date as due
    today; every other template as it is."""
    dues = list(due_dates)
    if template not in ("upcoming", "due_today") or not dues:
        return template
    earliest = min(dues)
    if earliest < today:
        return "overdue_friendly"
    if template == "upcoming" and earliest == today:
        return "due_today"
    return template


DEFAULT_TEMPLATES: dict[str, EmailTemplate] = {
    "upcoming": EmailTemplate(
        "Upcoming: invoice {{ invoice_number }} from {{ business_name }} is due {{ due_date }}",
        "Hello {{ greeting_name }},\n\n"
        "A friendly heads-up that the following will be due soon:\n\n{{ invoice_list }}" + _CLOSING,
    ),
    "due_today": EmailTemplate(
        "Invoice {{ invoice_number }} from {{ business_name }} is due today",
        "Hello {{ greeting_name }},\n\n"
        "Just a reminder that the following is due today:\n\n{{ invoice_list }}" + _CLOSING,
    ),
    "overdue_friendly": EmailTemplate(
        "Reminder: invoice {{ invoice_number }} from {{ business_name }} is now overdue",
        "Hello {{ greeting_name }},\n\n"
        "We haven't received payment for the following yet. It may simply have slipped "
        "through; you can pay online in a minute:\n\n{{ invoice_list }}" + _CLOSING,
    ),
    "overdue": EmailTemplate(
        "Second reminder: {{ total_overdue }} overdue to {{ business_name }}",
        "Hello {{ greeting_name }},\n\n"
        "Our records show the following still unpaid. Please arrange payment, or let us know "
        "when we can expect it:\n\n{{ invoice_list }}" + _CLOSING,
    ),
    "overdue_firm": EmailTemplate(
        "Action needed: {{ total_overdue }} overdue to {{ business_name }}",
        "Hello {{ greeting_name }},\n\n"
        "Despite our earlier reminders, the following remains unpaid. Please pay it now, or "
        "reply within 7 days to agree a date or a payment plan:\n\n{{ invoice_list }}" + _CLOSING,
    ),
    "final_notice": EmailTemplate(
        "Final notice: {{ total_overdue }} overdue to {{ business_name }}",
        "Hello {{ greeting_name }},\n\n"
        "This is our final reminder before we take further steps to recover the amount below, "
        "which may include referring the account to a collection agency. Please pay now, or "
        "contact us today:\n\n{{ invoice_list }}" + _CLOSING,
    ),
    "statement": EmailTemplate(
        "Your statement from {{ business_name }}: {{ total_due }} open",
        "Hello {{ greeting_name }},\n\n"
        "Here is your statement of open invoices:\n\n{{ invoice_list }}\n"
        "Pay them all together: {{ statement_link }}\n" + _CLOSING,
    ),
}


def derived_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields with the derived ones filled in (those the caller gave are kept)."""
    out = dict(fields)
    out.setdefault("greeting_name", fields.get("contact_name") or fields.get("customer_name", ""))
    out.setdefault("invoice_list", "".join(_invoice_line(i) for i in fields.get("invoices") or ()))
    fees, terms = fields.get("late_fees") or "", fields.get("payment_terms") or ""
    out.setdefault(
        "fees_and_terms",
        (f"\nLate fees and interest charged on these invoices: {fees}.\n" if fees else "")
        + (f"\nPayment terms: {terms}\n" if terms else ""),
    )
    out.setdefault(
        "sign_off", fields.get("signature") or f"Kind regards,\n{fields.get('business_name', '')}"
    )
    return out


def _invoice_line(i: Mapping[str, Any]) -> str:
    late = f" ({i['days_overdue']} days overdue)" if int(i.get("days_overdue") or 0) > 0 else ""
    return (
        f"  - Invoice {i.get('number', '')}: {i.get('amount_due', '')}, due "
        f"{i.get('due_date', '')}{late}\n    Pay online: {i.get('pay_link', '')}\n"
    )


def is_plain(template: EmailTemplate) -> bool:
    """True when the wording uses only `{{ field }}` placeholders (no template logic): the
    plain editor shows it as it is; anything else belongs to the advanced editor."""
    parts = (template.subject, template.text, template.html or "")
    if any("{%" in p or "{#" in p for p in parts):
        return False
    names = {m.strip() for p in parts for m in re.findall(r"\{\{(.*?)\}\}", p, re.S)}
    return names <= set(MERGE_FIELD_LABELS) | {"unsubscribe_link"}


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


class Overrun(TemplateProblem):
    """The template took too long or would build too much."""


def _too_big(what: str) -> Overrun:
    return Overrun(f"the template builds {what} too large for an email")


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise _too_big(f"a range of {len(r)} numbers (at most {MAX_RANGE:,})")
    return r


def _sized(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for v in (*args[1:], *kwargs.values()):
            if isinstance(v, int) and abs(v) > MAX_RANGE:
                raise _too_big(f"a {name} of {v}")
        return f(*args, **kwargs)

    for attr in ("jinja_pass_arg",):  # keep Jinja's "pass the environment/context" marker
        if hasattr(f, attr):
            setattr(guarded, attr, getattr(f, attr))
    return guarded


class BoundedEnvironment(SandboxedEnvironment):
    """The sandbox, plus refusals of the single operations that allocate without limit."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals["range"] = _bounded_range
        self.globals.pop("lipsum", None)
        for name in _SIZED_FILTERS:
            self.filters[name] = _sized(name, self.filters[name])
        self.filters["format"] = _sized("format", self._format_filter(self.filters["format"]))

    @staticmethod
    def _format_filter(f: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(value: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(value, str) and _BIG_WIDTH.search(value):
                raise _too_big("a padded value")
            return f(value, *args, **kwargs)

        return guarded

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        both_ints = isinstance(left, int) and isinstance(right, int)
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, (str, list, tuple))
                    and isinstance(n, int)
                    and len(seq) * n > MAX_OUTPUT
                ):
                    raise _too_big(f"a repetition of {len(seq) * n:,} items")
            if both_ints and left.bit_length() + right.bit_length() > 4096:
                raise _too_big("a number")
        elif operator == "**" and both_ints and abs(left) > 1:
            if right > 1000 or left.bit_length() * max(right, 0) > 4096:
                raise _too_big("a power")
        elif operator == "%" and isinstance(left, str) and _BIG_WIDTH.search(left):
            raise _too_big("a padded value")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and _BIG_FORMAT_SPEC.search(owner):
            raise _too_big("a padded value")
        return super().wrap_str_format(value)


_ENV = BoundedEnvironment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
_HTML_ENV = BoundedEnvironment(
    autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True
)


class _Deadline:
    """Stops a render that runs past its time: a trace function on the compiled template's own
    frames (Jinja compiles to Python under the file name "<template>") checks the clock on each
    line, so a loop that prints nothing is stopped as surely as one that does."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ends = time.monotonic() + seconds

    def _line(self, frame: FrameType, event: str, arg: Any) -> Any:
        if time.monotonic() > self.ends:
            raise Overrun(f"the template takes too long to render (over {self.seconds:g} s)")
        return self._line

    def _call(self, frame: FrameType, event: str, arg: Any) -> Any:
        return self._line if frame.f_code.co_filename == "<template>" else None

    def run(self, parts: Iterator[str]) -> str:
        out: list[str] = []
        size = 0
        previous = sys.gettrace()
        sys.settrace(self._call)
        try:
            for chunk in parts:
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise _too_big(f"a text of over {MAX_OUTPUT:,} characters")
                out.append(chunk)
                if time.monotonic() > self.ends:
                    raise Overrun(
                        f"the template takes too long to render (over {self.seconds:g} s)"
                    )
        finally:
            sys.settrace(previous)
        return "".join(out)


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


def render(
    template: EmailTemplate, fields: Mapping[str, Any], time_limit: float | None = None
) -> Rendered:
    """Render an email; raises TemplateProblem (one sentence) when it cannot, or takes longer
    than `time_limit` seconds (TIME_LIMIT unless given), or would be larger than MAX_OUTPUT
    characters."""
    # TIME_LIMIT is read at each call, not bound as a default: tests of a runaway template
    # shorten it rather than burn the full limit.
    deadline = _Deadline(TIME_LIMIT if time_limit is None else time_limit)
    fields = derived_fields(fields)
    with _as_problem():
        subject = " ".join(
            deadline.run(_ENV.from_string(template.subject).generate(fields)).split()
        )
        text = deadline.run(_ENV.from_string(template.text).generate(fields))
        html = (
            deadline.run(_HTML_ENV.from_string(template.html).generate(fields))
            if template.html
            else None
        )
    unsubscribe = str(fields.get("unsubscribe_link", ""))
    text += f"\nTo stop these reminders: {unsubscribe}\n"
    if html is None:
        # arbridge's own layout: the text as paragraphs, with a Pay button under the invoices.
        html = email_layout(
            text_as_html(text.rsplit("\nTo stop these reminders:", 1)[0], pay_button_for(fields)),
            footer=unsubscribe_footer(unsubscribe),
        )
    else:
        html += unsubscribe_footer(unsubscribe) + "</body></html>"
    return Rendered(subject[:250], text, html)


def render_text(source: str, fields: Mapping[str, Any], time_limit: float | None = None) -> str:
    """One plain-text template (a text message's wording), bounded like an email's."""
    deadline = _Deadline(TIME_LIMIT if time_limit is None else time_limit)
    with _as_problem():
        return deadline.run(_ENV.from_string(source).generate(fields))


@contextmanager
def _as_problem() -> Iterator[None]:
    """Whatever stops a template, as one sentence for the owner (TemplateProblem)."""
    try:
        yield
    except TemplateProblem:
        raise
    except TemplateError as e:
        raise TemplateProblem(f"the template does not render: {e.message or e}") from e
    except RecursionError as e:
        raise Overrun("the template calls itself without end") from e
    except (MemoryError, OverflowError) as e:
        raise _too_big("something") from e


# ---------------------------------------------------------------------------------------------
# Email HTML: one column, at most 600 px wide, inline styles (many mail clients drop <style>),
# and a "bulletproof" button (a table cell with a background colour, not an image or CSS alone),
# which Outlook draws too.

_URL = re.compile(r"https?://[^\s<>\"']+")
BUTTON_COLOUR = "#1d4ed8"  # white text on it: contrast 6.7:1


def pay_button_for(fields: Mapping[str, Any]) -> tuple[str, str] | None:
    """(link, label) of the email's Pay button: the one invoice's pay link, or the statement
    link when the email is about several; None when the email carries no pay link."""
    invoices = fields.get("invoices") or ()
    if len(invoices) > 1 and fields.get("statement_link"):
        return str(fields["statement_link"]), f"Pay {fields.get('total_due') or 'now'}".strip()
    if fields.get("pay_link"):
        amount = fields.get("amount_due")
        return str(fields["pay_link"]), f"Pay {amount} now" if amount else "Pay now"
    return None


def button_html(url: str, label: str) -> str:
    return (
        '<table role="presentation" cellpadding="0" cellspacing="0" border="0" '
        'style="margin:4px 0 20px"><tr>'
        f'<td align="center" bgcolor="{BUTTON_COLOUR}" style="border-radius:6px;'
        f'background:{BUTTON_COLOUR}">'
        f'<a class="pay-button" href="{escape(url)}" target="_blank" '
        'style="display:inline-block;padding:14px 28px;font-family:Arial,Helvetica,sans-serif;'
        "font-size:17px;font-weight:bold;line-height:20px;color:#ffffff;text-decoration:none;"
        f'border-radius:6px">{escape(label)}</a></td></tr></table>'
    )


def text_as_html(text: str, button: tuple[str, str] | None = None) -> str:
    """Plain text as HTML paragraphs (escaped, links clickable), with the button after the
    paragraph that carries its link (else after the first paragraph)."""
    paragraphs = [p for p in text.strip("\n").split("\n\n") if p.strip()]
    out: list[str] = []
    placed = button is None
    for i, para in enumerate(paragraphs):
        body = _URL.sub(
            lambda m: f'<a href="{m.group(0)}" style="color:{BUTTON_COLOUR}">{m.group(0)}</a>',
            str(escape(para)),
        ).replace("\n", "<br>\n")
        out.append(f'<p style="margin:0 0 16px">{body}</p>')
        if not placed and button is not None and (button[0] in para or i == len(paragraphs) - 1):
            out.append(button_html(*button))
            placed = True
    if not placed and button is not None:
        out.insert(min(1, len(out)), button_html(*button))
    return "\n".join(out)


def unsubscribe_footer(link: str) -> str:
    return (
        '<p style="color:#595959;font-size:12px;margin:16px 0 0">To stop these reminders, '
        f'<a href="{escape(link)}" style="color:#595959">unsubscribe</a>.</p>'
    )


def email_layout(body_html: str, footer: str = "") -> str:
    """A whole email document around `body_html`: single column, max 600 px, readable on a
    phone (the viewport is set; 16 px text; nothing wider than the screen)."""
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        '<body style="margin:0;padding:0;background:#f3f4f6">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        'style="background:#f3f4f6"><tr><td align="center" style="padding:16px 8px">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        'style="max-width:600px;background:#ffffff;border-radius:8px"><tr>'
        '<td style="padding:24px;font-family:Arial,Helvetica,sans-serif;font-size:16px;'
        'line-height:1.5;color:#1f2937;word-wrap:break-word;overflow-wrap:anywhere">'
        f"{body_html}{footer}</td></tr></table></td></tr></table></body></html>"
    )


SAMPLE_FIELDS: dict[str, Any] = {
    "customer_name": "Sample Customer",
    "contact_name": "Sam",
    "invoice_number": "INV-0001",
    "amount_due": "$100.00",
    "due_date": "Jan 1, 2026",
    "days_overdue": 10,
    "pay_link": "https://example.com/pay/sample",
    "statement_link": "https://example.com/pay/sample-statement",
    "business_name": "Your business",
    "signature": "",
    "unsubscribe_link": "https://example.com/u/sample",
    "invoices": [
        {
            "number": "INV-0001",
            "amount_due": "$100.00",
            "due_date": "Jan 1, 2026",
            "days_overdue": 10,
            "pay_link": "https://example.com/pay/sample",
            "late_fees": "$25.00",
        }
    ],
    "total_due": "$100.00",
    "total_overdue": "$100.00",
    "late_fees": "$25.00",
    "payment_terms": "A late fee of $25.00 is charged once after the due date.",
}


def check(template: EmailTemplate, sample: Mapping[str, Any] = SAMPLE_FIELDS) -> None:
    """Raise TemplateProblem if the template would not render with these fields."""
    render(template, sample)
