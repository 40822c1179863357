"""The documents' rendering alone (plain values in, PDF out): the business's locale for amounts
and dates, the paper size of its country, and what a statement says without a link."""

from __future__ import annotations

import io
from datetime import date

from pypdf import PdfReader

from arbridge.money import Money
from arbridge.services.documents.gather import aging_by_currency, document_locale
from arbridge.services.documents.pdf import (
    Business,
    DocLine,
    LetterDoc,
    StatementDoc,
    render_letter,
    render_statement,
    totals,
)

AS_OF = date(2026, 2, 11)


def words(data: bytes) -> tuple[str, tuple[float, float]]:
    page = PdfReader(io.BytesIO(data)).pages[0]
    text = " ".join(page.extract_text(extraction_mode="layout").split())
    return text, (float(page.mediabox.width), float(page.mediabox.height))


def line(number: str, amount: str, currency: str, due: date, online: bool = True) -> DocLine:
    return DocLine(
        number,
        date(2025, 12, 1),
        due,
        Money(amount, currency),
        Money(amount, currency),
        (AS_OF - due).days,
        online,
    )


def statement(business: Business, *lines: DocLine, url: str | None = None) -> StatementDoc:
    return StatementDoc(
        business, "Zoë's Café", "Zoë", AS_OF, lines, aging_by_currency(lines, AS_OF), url
    )


def test_the_locale_is_english_as_the_business_country_writes_it():
    assert document_locale("US") == "en_US"
    assert document_locale("gb") == "en_GB"
    assert document_locale("DE") == "en_DE"
    assert document_locale("JP") == "en"  # CLDR has no en_JP
    assert document_locale("") == "en"


def test_a_british_statement_on_a4_in_pounds_and_day_month_dates():
    gb = Business("Bramble & Co", "GB", "en_GB", "accounts@bramble.example")
    text, size = words(
        render_statement(
            statement(
                gb,
                line("B-1", "1234.50", "GBP", date(2026, 1, 1)),
                line("B-2", "10.00", "GBP", date(2026, 3, 1)),
                url="https://ar.example/pay/tok",
            )
        )
    )
    assert (round(size[0]), round(size[1])) == (595, 842)  # A4
    assert "Statement of account 11 Feb 2026" in text
    assert "B-1 1 Dec 2025 1 Jan 2026 41 days £1,234.50 £1,234.50" in text
    assert "Total due £1,244.50" in text
    # Aging: not yet due, 1-30, 31-60, 61-90, over 90, total.
    assert "GBP £10.00 £0.00 £1,234.50 £0.00 £0.00 £1,244.50" in text
    assert "https://ar.example/pay/tok" in text
    assert "accounts@bramble.example" in text


def test_a_german_business_writes_euros_its_own_way_on_a4():
    de = Business("Brot GmbH", "DE", "en_DE")
    text, size = words(render_statement(statement(de, line("R-1", "1234.50", "EUR", AS_OF))))
    assert (round(size[0]), round(size[1])) == (595, 842)
    assert "1.234,50 €" in text
    assert "R-1 1 Dec 2025 11 Feb 2026 — 1.234,50 € 1.234,50 €" in text  # due today: not late


def test_an_american_statement_is_on_letter():
    us = Business("Acme", "US", "en_US")
    _text, size = words(render_statement(statement(us, line("A-1", "5", "USD", AS_OF))))
    assert size == (612, 792)


def test_without_a_link_the_statement_points_to_the_email_and_shows_no_code():
    us = Business("Acme", "US", "en_US", "owner@acme.example")
    text, _ = words(render_statement(statement(us, line("A-1", "5", "USD", AS_OF))))
    assert "payment link in our latest email" in text and "/pay/" not in text


def test_what_the_link_does_not_pay_is_marked_and_left_out_of_its_amount():
    us = Business("Acme", "US", "en_US")
    doc = statement(
        us,
        line("A-1", "100.00", "USD", date(2026, 1, 1)),
        line("A-2", "40.00", "USD", date(2026, 1, 5), online=False),
        url="https://ar.example/pay/tok",
    )
    text, _ = words(render_statement(doc))
    assert "A-2 * " in text and "Total due $140.00" in text and "Pay $100.00 online" in text
    assert totals(doc.lines, online_only=True) == [Money("100.00", "USD")]


def test_the_letter_is_signed_with_the_owners_signature():
    us = Business("Acme", "US", "en_US")
    letter = LetterDoc(
        us,
        "Zoë's Café",
        None,
        AS_OF,
        (line("A-1", "100.00", "USD", date(2026, 1, 1)),),
        signature="Pat Doe\nAccounts, Acme",
    )
    text, _ = words(render_letter(letter))
    assert "Dear Zoë's Café," in text and "Pat Doe Accounts, Acme" in text
    assert "$100.00 remains unpaid" in text
