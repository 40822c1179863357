"""Statements, final-notice letters and case files as PDF, for the demo's customers: the text read
back out of each PDF states every open invoice, the totals, the aging and the link; the data
comes from a fixed few queries; a page drawn to PNG has ink where the header and the QR are."""

from __future__ import annotations

import io
from collections import defaultdict
from contextlib import contextmanager
from datetime import date

import pypdfium2
import zxingcpp
from babel.dates import format_date
from pypdf import PdfReader
from sqlalchemy import event, select

from arbridge.collections.aging import BUCKET_LABELS, BUCKETS, bucket, days_overdue
from arbridge.money import Money
from arbridge.services.documents import gather
from arbridge.services.documents.pdf import render_case_file, render_letter, render_statement
from arbridge.services.reminders.case_file import case_file
from arbridge.sync.model import Company, Customer, Invoice
from arbridge.sync.store import company_today, open_invoices

URL = "http://127.0.0.1:5000/pay/Zx9_statement-token-for-the-test-0123456789abc"


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(data))
    # Layout mode keeps a table's row on one line, as a person reads it.
    return "\n".join(page.extract_text(extraction_mode="layout") for page in reader.pages)


def flat(text: str) -> str:
    """The text with its line breaks and runs of spaces as single spaces."""
    return " ".join(text.split())


@contextmanager
def counted(rt):
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(rt.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(rt.engine, "before_cursor_execute", count)


def _open_by_customer(rt, company) -> tuple[date, dict[int, list[Invoice]]]:
    with rt.sessions() as s:
        today = company_today(s.get(Company, company.id), rt.clock)
        by_customer: dict[int, list[Invoice]] = defaultdict(list)
        for inv in open_invoices(s, company.id):
            by_customer[inv.customer_id].append(inv)
        for invoices in by_customer.values():
            for inv in invoices:
                s.expunge(inv)
    return today, by_customer


def test_every_demo_customers_statement_states_its_invoices_totals_aging_and_link(rt, demo_company):
    today, by_customer = _open_by_customer(rt, demo_company)
    assert len(by_customer) >= 20
    currencies = set()
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        for customer_id, invoices in by_customer.items():
            customer = s.get(Customer, customer_id)
            doc = gather.statement_doc(
                s, company, customer, today, pay_url=URL, link_expires_at=rt.clock.now()
            )
            text = pdf_text(render_statement(doc))
            words = flat(text)
            assert "Acme Supply Co." in text and customer.name in words
            assert "Nov 24, 2026" in text  # the statement's date, in the business's locale
            assert URL in text
            # Every open invoice with its number, dates and balance.
            rows = [flat(line) for line in text.splitlines()]
            for inv in invoices:
                [row] = [r for r in rows if r.startswith(f"{inv.number} ")]
                overdue = days_overdue(inv.due_on, today)
                assert row == " ".join(
                    [
                        inv.number,
                        format_date(inv.issued_on, "medium", locale="en_US"),
                        format_date(inv.due_on, "medium", locale="en_US"),
                        f"{overdue} days" if overdue > 0 else "—",
                        inv.total.format(),
                        inv.balance.format(),
                    ]
                )
            # The total per currency, summed here from the invoices themselves.
            sums: dict[str, Money] = {}
            aged: dict[tuple[str, str], Money] = {}
            for inv in invoices:
                cur = inv.currency
                currencies.add(cur)
                sums[cur] = sums.get(cur, Money.zero(cur)) + inv.balance
                key = (cur, bucket(days_overdue(inv.due_on, today)))
                aged[key] = aged.get(key, Money.zero(cur)) + inv.balance
            for cur, total in sums.items():
                assert f"Total due {'' if len(sums) == 1 else cur + ' '}{total.format()}" in words
                # The aging row of the currency: each bucket, then the same total.
                cells = [aged.get((cur, b), Money.zero(cur)).format() for b in BUCKETS]
                assert " ".join([*cells, total.format()]) in words
            assert all(BUCKET_LABELS[b] in words for b in BUCKETS)
    assert {"USD", "EUR", "CAD"} <= currencies  # the demo's foreign-currency customers too


def test_a_statement_reads_a_fixed_few_queries_whatever_the_number_of_invoices(rt, demo_company):
    today, by_customer = _open_by_customer(rt, demo_company)
    most = max(by_customer, key=lambda c: len(by_customer[c]))
    fewest = min(by_customer, key=lambda c: len(by_customer[c]))
    assert len(by_customer[most]) >= 4 * len(by_customer[fewest])
    counts = []
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        for customer_id in (most, fewest):
            customer = s.get(Customer, customer_id)
            with counted(rt) as statements:
                render_statement(gather.statement_doc(s, company, customer, today))
            counts.append(len(statements))
    assert counts[0] == counts[1] <= 5, counts


def test_the_same_statement_gives_the_same_bytes(rt, demo_company):
    """No timestamp or random id in the file: a document of the same facts is the same file."""
    today, by_customer = _open_by_customer(rt, demo_company)
    customer_id = next(iter(by_customer))
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        customer = s.get(Customer, customer_id)
        first = render_statement(gather.statement_doc(s, company, customer, today, pay_url=URL))
        again = render_statement(gather.statement_doc(s, company, customer, today, pay_url=URL))
    assert first == again


def test_a_statement_page_drawn_as_png_shows_the_header_and_the_qr_code(rt, demo_company, tmp_path):
    today, by_customer = _open_by_customer(rt, demo_company)
    busiest = max(by_customer, key=lambda c: len(by_customer[c]))
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        doc = gather.statement_doc(s, company, s.get(Customer, busiest), today, pay_url=URL)
    data = render_statement(doc)
    pdf = pypdfium2.PdfDocument(data)
    page = pdf[len(pdf) - 1]  # the last page: "How to pay" with the QR code
    image = page.render(scale=1.5).to_pil().convert("L")
    image.save(tmp_path / "statement.png")
    width, height = image.size
    assert (width, height) == (round(612 * 1.5), round(792 * 1.5))  # US Letter for a US business
    pixels = image.load()

    def ink(box: tuple[int, int, int, int]) -> float:
        x0, y0, x1, y1 = box
        dark = sum(1 for x in range(x0, x1, 2) for y in range(y0, y1, 2) if pixels[x, y] < 128)
        return dark / (((x1 - x0) // 2) * ((y1 - y0) // 2))

    assert ink((0, 0, width, height)) < 0.2  # a white page with text, not a black box
    # The QR code: a square of dense modules, about half dark, right of the "How to pay" text.
    qr = _darkest_square(image)
    assert qr is not None and 0.3 < ink(qr) < 0.7
    # A phone's camera reads it as the pay link, and nothing else.
    [code] = zxingcpp.read_barcodes(image)
    assert code.format == zxingcpp.BarcodeFormat.QRCode and code.text == URL
    pdf.close()


def _darkest_square(image) -> tuple[int, int, int, int] | None:
    """The bounding box of the QR code: the right-hand column of the page holding the most ink
    in a square about 32 mm wide."""
    width, height = image.size
    side = round(32 / 25.4 * 72 * 1.5)
    pixels = image.load()
    best, best_box = 0.0, None
    for y in range(0, height - side, side // 4):
        for x in range(width // 2, width - side, side // 4):
            dark = sum(
                1
                for i in range(x, x + side, 4)
                for j in range(y, y + side, 4)
                if pixels[i, j] < 128
            )
            share = dark / ((side // 4) ** 2)
            if share > best:
                best, best_box = share, (x, y, x + side, y + side)
    return best_box


def test_a_final_notice_letter_states_the_overdue_invoices_the_total_and_the_link(rt, demo_company):
    today, by_customer = _open_by_customer(rt, demo_company)
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        letters = 0
        for customer_id in by_customer:
            customer = s.get(Customer, customer_id)
            overdue = gather.overdue_to_chase(s, company, customer, today)
            if not overdue:
                continue
            doc = gather.letter_doc(s, company, customer, today, overdue, pay_url=URL)
            words = flat(pdf_text(render_letter(doc)))
            assert "Final notice before further action" in words
            assert "collection agency" in words
            for inv in overdue:
                assert inv.number in words
                assert f"{days_overdue(inv.due_on, today)} days" in words
            sums: dict[str, Money] = {}
            for inv in overdue:
                sums[inv.currency] = sums.get(inv.currency, Money.zero(inv.currency)) + inv.balance
            amounts = " + ".join(m.format() for m in sums.values())
            assert f"{amounts} remains unpaid" in words
            assert URL in words
            letters += 1
    assert letters >= 10


def test_the_agency_case_file_as_pdf_holds_what_its_json_holds(rt, demo_company):
    today, by_customer = _open_by_customer(rt, demo_company)
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        customer = s.get(Customer, next(iter(by_customer)))
        data = case_file(s, company, customer)
        words = flat(pdf_text(render_case_file(data, gather.business_of(s, company), today)))
    assert "Collection case file" in words and customer.name in words
    assert data["invoices"]
    for i in data["invoices"]:
        assert i["number"] in words
        assert Money.rounded(i["balance"], i["currency"]).format() in words
    for c in data["customer"]["contacts"]:
        if c["email"]:
            assert c["email"] in words


def test_every_demo_customer_has_a_document_even_with_nothing_open(rt, demo_company):
    today, by_customer = _open_by_customer(rt, demo_company)
    with rt.sessions() as s:
        company = s.get(Company, demo_company.id)
        settled = s.scalars(
            select(Customer).where(
                Customer.company_id == company.id, Customer.id.not_in(list(by_customer))
            )
        ).first()
        assert settled is not None
        words = flat(pdf_text(render_statement(gather.statement_doc(s, company, settled, today))))
    assert "Nothing is open" in words
