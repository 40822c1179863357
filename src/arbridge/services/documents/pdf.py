"""Rendering only: plain values in, PDF bytes out (ReportLab's Platypus). Nothing here reads the
database, the clock or the settings, so the same values always give the same bytes.

Why ReportLab rather than WeasyPrint: it installs from PyPI alone (no Pango, no system fonts),
so every machine and CI render the same pages with nothing to apt-get. Text is set in the PDF
standard fonts (Helvetica), which cover Latin scripts; amounts and dates are formatted with
Babel in the business's locale (`gather.document_locale`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.sax.saxutils import escape

from babel.dates import format_date
from reportlab.graphics.barcode.qr import QrCode
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from arbridge.collections.aging import BUCKET_LABELS, BUCKETS, Aging
from arbridge.money import Money

# Countries that print on US Letter; everyone else on A4.
LETTER_COUNTRIES = frozenset({"US", "CA", "MX", "PH", "CL", "CO", "VE", "GT", "PR"})
QR_SIZE = 32 * mm
INK = colors.HexColor("#1f2933")
MUTED = colors.HexColor("#616e7c")
RULE = colors.HexColor("#cbd2d9")
SHADE = colors.HexColor("#f0f4f8")


@dataclass(frozen=True)
class Business:
    name: str
    country: str
    locale: str  # Babel's locale name for amounts and dates (en_US, en_GB, ...)
    email: str | None = None  # where questions go (the owner's address, as emails' Reply-To)
    logo: bytes | None = None  # PNG or JPEG (Settings → Business); none: the name stands alone


@dataclass(frozen=True)
class DocLine:
    """One open invoice as a document lists it."""

    number: str
    issued_on: date
    due_on: date
    total: Money
    balance: Money
    days_overdue: int
    online: bool = True  # paid through the document's link (not on hold, not in dispute)


@dataclass(frozen=True)
class StatementDoc:
    business: Business
    customer: str
    contact: str | None
    as_of: date
    lines: tuple[DocLine, ...]
    aging: tuple[Aging, ...]  # one per currency, aged on `as_of`
    pay_url: str | None = None  # the statement link; None where no link may be minted (a GET)
    link_expires_on: date | None = None


@dataclass(frozen=True)
class LetterDoc:
    """The final notice, on paper: the overdue invoices, the total, how to pay."""

    business: Business
    customer: str
    contact: str | None
    as_of: date
    lines: tuple[DocLine, ...]
    signature: str = ""
    pay_url: str | None = None
    link_expires_on: date | None = None


# ---------------------------------------------------------------------------------------------
# Formatting.


def _day(d: date | None, locale: str) -> str:
    return format_date(d, "medium", locale=locale) if d else "—"


def _money(m: Money, locale: str) -> str:
    return m.format(locale)


def totals(lines: Sequence[DocLine], *, online_only: bool = False) -> list[Money]:
    """The lines' balances summed per currency, currencies in alphabetical order."""
    by_cur: dict[str, Money] = {}
    for line in lines:
        if online_only and not line.online:
            continue
        cur = line.balance.currency
        by_cur[cur] = by_cur.get(cur, Money.zero(cur)) + line.balance
    return [by_cur[cur] for cur in sorted(by_cur)]


def _styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontSize=10, leading=14, textColor=INK)
    return {
        "body": body,
        "small": ParagraphStyle("small", parent=body, fontSize=8.5, leading=11, textColor=MUTED),
        "cell": ParagraphStyle("cell", parent=body, fontSize=9, leading=11.5),
        "business": ParagraphStyle(
            "business", parent=body, fontName="Helvetica-Bold", fontSize=17, leading=21
        ),
        "title": ParagraphStyle(
            "title", parent=body, fontName="Helvetica-Bold", fontSize=15, leading=19
        ),
        "right": ParagraphStyle("right", parent=body, alignment=TA_RIGHT),
        "h2": ParagraphStyle(
            "h2", parent=body, fontName="Helvetica-Bold", fontSize=11.5, leading=15, spaceBefore=10
        ),
        "url": ParagraphStyle("url", parent=body, fontName="Courier", fontSize=8.5, leading=11),
    }


def _text(value: str | None) -> str:
    """Plain text for a Paragraph (which reads a small HTML-like markup)."""
    return escape(value or "").replace("\n", "<br/>")


def _qr(url: str, size: float = QR_SIZE) -> Flowable:
    """The link as a QR code drawn straight onto the page: one rectangle per run of dark
    modules, the code worked out once. ReportLab's graphics widget built it twice (once for its
    bounds) and a shape per run to render: a third of a demo month's reminder run went there."""
    return QrCode(url, width=size, height=size, qrLevel="M")


def _page_size(business: Business) -> tuple[float, float]:
    return LETTER if business.country.upper() in LETTER_COUNTRIES else A4


def _build(business: Business, title: str, story: list[Flowable]) -> bytes:
    """The PDF: fixed metadata and no timestamps (`invariant`), page numbers in the footer."""
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=_page_size(business),
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=title,
        author=business.name,
        creator="arbridge",
        invariant=1,
    )

    def footer(canvas: Canvas, d: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(MUTED)
        canvas.drawString(d.leftMargin, 10 * mm, f"{business.name} · {title}")
        canvas.drawRightString(d.pagesize[0] - d.rightMargin, 10 * mm, f"Page {d.page}")
        canvas.restoreState()

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()


def _header(
    business: Business,
    title: str,
    as_of: date,
    customer: str,
    contact: str | None,
    label: str = "To",
) -> list[Flowable]:
    s = _styles()
    name = Paragraph(_text(business.name), s["business"])
    brand: Flowable | list[Flowable] = name
    if business.logo:  # the logo above the name: a logo alone may not spell the business out
        logo = Image(io.BytesIO(business.logo), width=40 * mm, height=16 * mm, kind="proportional")
        logo.hAlign = "LEFT"
        brand = [logo, Spacer(1, 2 * mm), name]
    top = Table(
        [
            [
                brand,
                Paragraph(f"{_text(title)}<br/>{_day(as_of, business.locale)}", s["right"]),
            ]
        ],
        colWidths=["60%", "40%"],
    )
    top.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 0),
                ("RIGHTPADDING", (0, 0), (-1, -1), 0),
            ]
        )
    )
    to = f"<b>{_text(customer)}</b>" + (
        f"<br/>Attn: {_text(contact)}" if contact and contact != customer else ""
    )
    return [
        top,
        Spacer(1, 8 * mm),
        Paragraph(label, s["small"]),
        Paragraph(to, s["body"]),
        Spacer(1, 6 * mm),
    ]


def _grid(rows: list[list[Any]], widths: list[float], *, total_rows: int = 0) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1)
    style = [
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8.5),
        ("FONT", (0, 1), (-1, -1), "Helvetica", 9),
        ("TEXTCOLOR", (0, 0), (-1, -1), INK),
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, INK),
        ("LINEBELOW", (0, 1), (-1, -1), 0.3, RULE),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
    ]
    if total_rows:
        style += [
            ("FONT", (0, -total_rows), (-1, -1), "Helvetica-Bold", 9.5),
            ("BACKGROUND", (0, -total_rows), (-1, -1), SHADE),
        ]
    table.setStyle(TableStyle(style))
    return table


def _right(table: Table, first_col: int) -> Table:
    table.setStyle(TableStyle([("ALIGN", (first_col, 0), (-1, -1), "RIGHT")]))
    return table


def _invoice_table(lines: Sequence[DocLine], locale: str, width: float) -> Table:
    rows: list[list[Any]] = [["Invoice", "Issued", "Due", "Overdue", "Amount", "Balance"]]
    for line in lines:
        rows.append(
            [
                line.number + ("" if line.online else " *"),
                _day(line.issued_on, locale),
                _day(line.due_on, locale),
                f"{line.days_overdue} days" if line.days_overdue > 0 else "—",
                _money(line.total, locale),
                _money(line.balance, locale),
            ]
        )
    sums = totals(lines)
    for m in sums:
        rows.append(
            ["Total due", "", "", "", m.currency if len(sums) > 1 else "", _money(m, locale)]
        )
    fractions = (0.19, 0.15, 0.15, 0.13, 0.19, 0.19)
    return _right(_grid(rows, [width * f for f in fractions], total_rows=len(sums)), 3)


def _aging_table(aging: Sequence[Aging], locale: str, width: float) -> Table:
    rows: list[list[Any]] = [["", *(BUCKET_LABELS[b] for b in BUCKETS), "Total"]]
    for a in aging:
        rows.append(
            [
                a.currency,
                *(_money(a.buckets[b], locale) for b in BUCKETS),
                _money(a.open_balance, locale),
            ]
        )
    first = 0.1 * width
    rest = (width - first) / (len(BUCKETS) + 1)
    return _right(_grid(rows, [first] + [rest] * (len(BUCKETS) + 1)), 1)


def _how_to_pay(
    business: Business,
    pay_url: str | None,
    expires_on: date | None,
    width: float,
    due: Sequence[Money],
) -> list[Flowable]:
    s = _styles()
    ask = (
        f" Questions about this document, or paying another way: write to "
        f"<b>{_text(business.email)}</b>."
        if business.email
        else " Questions about this document, or paying another way: reply to our email."
    )
    amounts = " + ".join(_money(m, business.locale) for m in due)
    if pay_url is None:
        text = [
            Paragraph(
                "Pay online with the payment link in our latest email; it shows your current "
                "balance. Please quote the invoice numbers with any payment." + ask,
                s["body"],
            )
        ]
        return [Paragraph("How to pay", s["h2"]), *text]
    until = (
        f" The link works until {_day(expires_on, business.locale)}; after that, the latest "
        "email from us has a new one."
        if expires_on
        else ""
    )
    words: list[Flowable] = [
        Paragraph(
            f"Pay {amounts} online by card or bank payment: open the link below, or scan the "
            "code with your phone's camera. The page always shows your current balance." + until,
            s["body"],
        ),
        Spacer(1, 2 * mm),
        Paragraph(f'<a href="{escape(pay_url)}">{escape(pay_url)}</a>', s["url"]),
        Spacer(1, 2 * mm),
        Paragraph("Please quote the invoice numbers with any other payment." + ask, s["small"]),
    ]
    box = Table([[words, _qr(pay_url)]], colWidths=[width - QR_SIZE - 6 * mm, QR_SIZE + 6 * mm])
    box.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BOX", (0, 0), (-1, -1), 0.6, RULE),
                ("TOPPADDING", (0, 0), (-1, -1), 6),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
                ("LEFTPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    return [KeepTogether([Paragraph("How to pay", s["h2"]), Spacer(1, 1.5 * mm), box])]


def _width(business: Business) -> float:
    return _page_size(business)[0] - 36 * mm


# ---------------------------------------------------------------------------------------------
# The documents.


def render_statement(doc: StatementDoc) -> bytes:
    """The customer statement: every open invoice, the aging summary, the total, how to pay."""
    s, b, width = _styles(), doc.business, _width(doc.business)
    story = _header(b, "Statement of account", doc.as_of, doc.customer, doc.contact)
    if not doc.lines:
        story.append(Paragraph("Nothing is open: thank you, your account is settled.", s["body"]))
        return _build(b, "Statement of account", story)
    story += [
        Paragraph("Open invoices", s["h2"]),
        Spacer(1, 1.5 * mm),
        _invoice_table(doc.lines, b.locale, width),
    ]
    if any(not line.online for line in doc.lines):
        story.append(
            Paragraph(
                "* On hold or in dispute: not included in the online payment. Contact us about it.",
                s["small"],
            )
        )
    story += [
        Paragraph(f"Aging on {_day(doc.as_of, b.locale)}", s["h2"]),
        Spacer(1, 1.5 * mm),
        _aging_table(doc.aging, b.locale, width),
    ]
    story += _how_to_pay(
        b, doc.pay_url, doc.link_expires_on, width, totals(doc.lines, online_only=True)
    )
    return _build(b, "Statement of account", story)


def render_letter(doc: LetterDoc) -> bytes:
    """The final notice before further steps (an agency), as a letter."""
    s, b, width = _styles(), doc.business, _width(doc.business)
    story = _header(b, "Final notice", doc.as_of, doc.customer, doc.contact)
    amounts = " + ".join(_money(m, b.locale) for m in totals(doc.lines))
    signature = doc.signature.strip() or f"Kind regards,\n{b.name}"
    story += [
        Paragraph("Final notice before further action", s["title"]),
        Spacer(1, 4 * mm),
        Paragraph(f"Dear {_text(doc.contact or doc.customer)},", s["body"]),
        Spacer(1, 2 * mm),
        Paragraph(
            f"Despite our earlier reminders, {amounts} remains unpaid on the invoices below. "
            "This is our final notice before we take further steps to recover it, which may "
            "include referring the account to a collection agency. Please pay now, or contact "
            "us today to agree how and when it will be paid.",
            s["body"],
        ),
        Spacer(1, 4 * mm),
        _invoice_table(doc.lines, b.locale, width),
    ]
    story += _how_to_pay(b, doc.pay_url, doc.link_expires_on, width, totals(doc.lines))
    story += [
        Spacer(1, 6 * mm),
        Paragraph(
            "If you have paid in the last few days, thank you, and please disregard this letter.",
            s["body"],
        ),
        Spacer(1, 4 * mm),
        Paragraph(_text(signature), s["body"]),
    ]
    return _build(b, "Final notice", story)


def _stated(amount: str, currency: str, locale: str) -> str:
    """An amount the case file states as a decimal string, in its currency."""
    try:
        return Money.rounded(Decimal(amount), currency).format(locale)
    except (InvalidOperation, ValueError, TypeError):
        return amount


def _iso_day(value: str | None, locale: str) -> str:
    try:
        return _day(date.fromisoformat(value[:10]), locale) if value else "—"
    except ValueError:
        return value or "—"


def render_case_file(data: dict[str, Any], business: Business, as_of: date) -> bytes:
    """The agency case file (`reminders.case_file`'s JSON) as a document: the account, every
    invoice, every message sent and every reply, in order."""
    s, loc, width = _styles(), business.locale, _width(business)
    customer = data["customer"]
    story = _header(business, "Collection case file", as_of, customer["name"], None, "Account")

    def cell(value: str | None) -> Paragraph:
        return Paragraph(_text(value), s["cell"])

    story += [
        Paragraph(
            f"Ledger reference: {_text(customer.get('ledger_id'))}. Prepared for a collection "
            f"agency by {_text(business.name)}"
            + (f" ({_text(business.email)})" if business.email else "")
            + ".",
            s["small"],
        ),
        Paragraph("Contacts", s["h2"]),
    ]
    contacts = [
        [cell(c.get("name")), cell(c.get("email")), cell(c.get("phone"))]
        for c in customer.get("contacts") or []
    ]
    story.append(
        _grid([["Name", "Email", "Phone"], *contacts], [width * 0.35, width * 0.4, width * 0.25])
        if contacts
        else Paragraph("None on record.", s["body"])
    )
    story.append(Paragraph("Invoices", s["h2"]))
    rows: list[list[Any]] = [["Invoice", "Issued", "Due", "Status", "Total", "Balance"]]
    for i in data.get("invoices") or []:
        rows.append(
            [
                i["number"],
                _iso_day(i["issued_on"], loc),
                _iso_day(i["due_on"], loc),
                i["status"],
                _stated(i["total"], i["currency"], loc),
                _stated(i["balance"], i["currency"], loc),
            ]
        )
    fractions = (0.19, 0.16, 0.16, 0.11, 0.19, 0.19)
    story.append(_right(_grid(rows, [width * f for f in fractions]), 4))
    story.append(Paragraph("Messages sent", s["h2"]))
    mails = data.get("messages_sent") or []
    if not mails:
        story.append(Paragraph("None.", s["body"]))
    for m in mails:
        story.append(
            KeepTogether(
                [
                    Spacer(1, 2 * mm),
                    Paragraph(
                        f"<b>{_iso_day(m['sent_at'], loc)}</b> to {_text(m['to'])}: "
                        f"{_text(m['subject'])}",
                        s["cell"],
                    ),
                    Paragraph(_text((m.get("text") or "")[:3000]), s["small"]),
                ]
            )
        )
    story.append(Paragraph("Replies, disputes and promises", s["h2"]))
    replies = [
        [
            cell(_iso_day(r["at"], loc)),
            cell(r.get("invoice")),
            cell(r["kind"] + (f" to pay by {r['promised_on']}" if r.get("promised_on") else "")),
            cell(r.get("message")),
            cell(r.get("resolution") or "open"),
        ]
        for r in data.get("replies") or []
    ]
    story.append(
        _grid(
            [["When", "Invoice", "Kind", "Message", "Outcome"], *replies],
            [width * f for f in (0.15, 0.15, 0.16, 0.38, 0.16)],
        )
        if replies
        else Paragraph("None.", s["body"])
    )
    return _build(business, "Collection case file", story)
