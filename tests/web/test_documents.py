"""The documents as downloads: the customer's statement under its statement link (refused like
the pay page refuses a link), and the owner's statement, final notice and case file of one
customer (signed in, own company only)."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from arbridge.money import Money
from arbridge.services.reminders.holds import record_hold
from arbridge.sync.db import transaction
from arbridge.sync.model import Customer, Invoice, MailMessage, PayToken
from arbridge.sync.store import issue_pay_token, open_invoices
from tests.web.conftest import OTHER_SLUG, assert_friendly_error, csrf_token, parse

BASE = "http://127.0.0.1:5000"


def words_of(response) -> str:
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    assert response.headers["Cache-Control"] == "no-store"
    reader = PdfReader(io.BytesIO(response.data))
    text = "\n".join(p.extract_text(extraction_mode="layout") for p in reader.pages)
    return " ".join(text.split())


@pytest.fixture
def customer(app):
    """The customer's browser: never signed in."""
    return app.test_client()


@pytest.fixture
def busy(rt, demo_company) -> Customer:
    """The demo customer with the most open invoices in one currency."""
    with rt.sessions() as s:
        counts = Counter((i.customer_id, i.currency) for i in open_invoices(s, demo_company.id))
        (customer_id, _cur), n = counts.most_common(1)[0]
        assert n >= 4
        cust = s.get(Customer, customer_id)
        s.expunge(cust)
        return cust


def _open(rt, cust: Customer) -> list[Invoice]:
    with rt.sessions() as s:
        rows = s.scalars(
            select(Invoice).where(Invoice.customer_id == cust.id, Invoice.is_open)
        ).all()
        for r in rows:
            s.expunge(r)
        return list(rows)


def _statement_link(owner_client, cust: Customer) -> str:
    page = owner_client.get("/c/demo/reminders")
    response = owner_client.post(
        f"/c/demo/customers/{cust.id}/statement-link",
        data={"csrf_token": csrf_token(page.data)},
    )
    assert response.status_code == 200
    doc = parse(response.data)
    path = doc.by_id("statement-link").attrs["href"].removeprefix(BASE)
    assert doc.by_id("statement-pdf").attrs["href"] == f"{BASE}{path}/statement.pdf"
    return path


def test_a_statement_link_downloads_its_statement_with_the_link_and_the_total(
    owner_client, customer, rt, busy
):
    path = _statement_link(owner_client, busy)
    # The pay page offers it too.
    page = parse(customer.get(path).data)
    assert page.by_id("statement-pdf").attrs["href"] == f"{path}/statement.pdf"
    words = words_of(customer.get(f"{path}/statement.pdf"))
    assert f"{BASE}{path}" in words  # the link, written out beside its QR code
    assert busy.name in words and "Acme Supply Co." in words
    invoices = _open(rt, busy)
    total = sum((i.balance for i in invoices), Money.zero(invoices[0].currency))
    for inv in invoices:
        assert f"{inv.number} " in words and inv.balance.format() in words
    assert f"Total due {total.format()}" in words
    assert f"Pay {total.format()} online" in words
    # 60 days from today, in the business's timezone: when the link stops working.
    assert "The link works until Jan 23, 2027" in words


def test_a_statement_link_made_in_the_evening_said_it_worked_a_day_longer_than_it_does(
    owner_client, rt, busy
):
    # 19:30 in Chicago is 01:30 the next day in UTC: the page named the UTC day of its end.
    rt.clock.advance(timedelta(hours=10, minutes=30))
    owner_client.get("/c/demo/reminders")
    page = owner_client.post(
        f"/c/demo/customers/{busy.id}/statement-link",
        data={"csrf_token": csrf_token(owner_client.get("/c/demo/reminders").data)},
    )
    with rt.sessions() as s:
        link = s.scalars(select(PayToken).order_by(PayToken.id.desc()).limit(1)).one()
    assert link.expires_at.replace(tzinfo=UTC) == datetime(2027, 1, 24, 1, 30, tzinfo=UTC)
    assert "It works until Jan 23, 2027;" in parse(page.data).text


def test_a_statement_marks_what_its_link_does_not_pay(owner_client, customer, rt, busy):
    invoices = sorted(_open(rt, busy), key=lambda i: (i.due_on, i.id))
    disputed = invoices[0]
    with transaction(rt.sessions) as s:
        record_hold(s, rt, s.get(Invoice, disputed.id), "dispute", message="wrong quantity")
    path = _statement_link(owner_client, busy)
    words = words_of(customer.get(f"{path}/statement.pdf"))
    rest = sum((i.balance for i in invoices[1:]), Money.zero(disputed.currency))
    everything = rest + disputed.balance
    assert f"{disputed.number} * " in words  # still listed: the customer owes it
    assert f"Total due {everything.format()}" in words
    assert f"Pay {rest.format()} online" in words  # what the link charges
    assert "On hold or in dispute: not included in the online payment" in words


def _refused(response, status: int, *secrets: str) -> None:
    assert response.status_code == status
    assert response.mimetype == "text/html"
    assert_friendly_error(response.get_data(as_text=True), *secrets)


def test_a_tampered_unknown_withdrawn_or_expired_link_gets_no_statement(
    owner_client, customer, rt, clock, busy
):
    path = _statement_link(owner_client, busy)
    token = path.removeprefix("/pay/")
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    numbers = [i.number for i in _open(rt, busy)]
    for bad in (tampered, "x", "A" * 201):
        _refused(customer.get(f"/pay/{bad}/statement.pdf"), 404, busy.name, *numbers)
    # Expired: says so (410), like the pay page.
    clock.advance(timedelta(days=61))
    response = customer.get(f"{path}/statement.pdf")
    _refused(response, 410, busy.name, *numbers)
    assert "expired" in response.get_data(as_text=True)
    clock.advance(timedelta(days=-61))
    assert customer.get(f"{path}/statement.pdf").status_code == 200
    # Withdrawn by the owner: as good as no link.
    page = owner_client.get("/c/demo/reminders")
    owner_client.post(
        f"/c/demo/customers/{busy.id}/revoke-statement-links",
        data={"csrf_token": csrf_token(page.data)},
    )
    _refused(customer.get(f"{path}/statement.pdf"), 404, busy.name, *numbers)


def test_an_invoices_own_link_does_not_open_the_whole_account(customer, rt, busy):
    invoices = _open(rt, busy)
    with transaction(rt.sessions) as s:
        token = issue_pay_token(s, rt.clock, s.get(Invoice, invoices[0].id))
    assert customer.get(f"/pay/{token}").status_code == 200
    _refused(
        customer.get(f"/pay/{token}/statement.pdf"),
        404,
        *(i.number for i in invoices[1:]),
    )


def test_the_owner_downloads_a_customers_statement_final_notice_and_case_file(
    owner_client, rt, busy
):
    with rt.sessions() as s:
        tokens_before = len(s.scalars(select(PayToken)).all())
    words = words_of(owner_client.get(f"/c/demo/customers/{busy.id}/statement.pdf"))
    invoices = _open(rt, busy)
    assert all(f"{i.number} " in words for i in invoices)
    # A GET mints no link: the owner's copy points to the email's link instead.
    assert "/pay/" not in words
    assert "payment link in our latest email" in words
    letter = words_of(owner_client.get(f"/c/demo/customers/{busy.id}/final-notice.pdf"))
    assert "Final notice before further action" in letter
    overdue = [i for i in invoices if i.due_on < rt.clock.now().date()]
    assert overdue and all(f"{i.number} " in letter for i in overdue)
    case = words_of(owner_client.get(f"/c/demo/customers/{busy.id}/case-file.pdf"))
    assert "Collection case file" in case and busy.name in case
    with rt.sessions() as s:
        assert len(s.scalars(select(PayToken)).all()) == tokens_before
    # The invoice page links to the customer's documents.
    page = parse(owner_client.get(f"/c/demo/invoices/{invoices[0].id}").data)
    links = {a.attrs["href"] for a in page.by_id("customer-documents").find_all("a")}
    assert links == {
        f"/c/demo/customers/{busy.id}/statement.pdf",
        f"/c/demo/customers/{busy.id}/final-notice.pdf",
    }


def test_no_final_notice_for_a_customer_with_nothing_overdue(owner_client, rt, demo_company):
    with rt.sessions() as s:
        today = rt.clock.now().date()
        overdue = set(
            s.scalars(
                select(Invoice.customer_id).where(
                    Invoice.company_id == demo_company.id, Invoice.is_open, Invoice.due_on < today
                )
            )
        )
        calm = s.scalars(
            select(Customer.id).where(
                Customer.company_id == demo_company.id, Customer.id.not_in(overdue)
            )
        ).first()
    response = owner_client.get(f"/c/demo/customers/{calm}/final-notice.pdf")
    assert response.status_code == 409
    assert "Nothing is overdue" in response.get_data(as_text=True)


def test_owner_documents_need_the_owner_of_that_company(
    client, owner_client, rt, busy, other_company
):
    paths = [
        f"/customers/{{id}}/{name}"
        for name in ("statement.pdf", "final-notice.pdf", "case-file.pdf")
    ]
    with rt.sessions() as s:
        theirs = s.get(Invoice, other_company.invoice_ids[0]).customer_id
    for path in paths:
        # Another company's customer, under either slug: not found, nothing of it shown.
        for slug in ("demo", OTHER_SLUG):
            response = owner_client.get(f"/c/{slug}{path.format(id=theirs)}")
            _refused(response, 404, *other_company.secrets)
    stranger = owner_client.application.test_client()
    for path in paths:
        response = stranger.get(f"/c/demo{path.format(id=busy.id)}")
        assert response.status_code == 302
        assert response.headers["Location"].endswith("/signed-out")


def test_a_statement_in_the_mailbox_says_it_carried_the_pdf(owner_client, rt, busy):
    with transaction(rt.sessions) as s:
        rows = [
            MailMessage(
                company_id=busy.company_id,
                kind=kind,
                customer_id=busy.id,
                to_addr="ap@example.com",
                subject=kind,
                text_body="Here is your statement",
                message_id=f"<{kind}@arbridge.test>",
                headers={},
                transport="mailbox",
                created_at=rt.clock.now(),
            )
            for kind in ("statement", "reminder")
        ]
        s.add_all(rows)
        s.flush()
        statement, reminder = (m.id for m in rows)
    page = parse(owner_client.get(f"/c/demo/mailbox/{statement}").data)
    link = page.by_id("attached").find("a")
    assert link.attrs["href"] == f"/c/demo/customers/{busy.id}/statement.pdf"
    assert parse(owner_client.get(f"/c/demo/mailbox/{reminder}").data).by_id("attached") is None


def test_the_statement_is_dated_in_the_business_timezone(owner_client, rt, clock, busy):
    """03:00 UTC on Nov 25 is still the evening of Nov 24 in Chicago, where the business is."""
    clock.at = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    words = words_of(owner_client.get(f"/c/demo/customers/{busy.id}/statement.pdf"))
    assert "Statement of account Nov 24, 2026" in words
    assert "Aging on Nov 24, 2026" in words
    clock.at = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 00:00 in Chicago: the next day
    words = words_of(owner_client.get(f"/c/demo/customers/{busy.id}/statement.pdf"))
    assert "Statement of account Nov 25, 2026" in words


def _png(width: int = 120, height: int = 40) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (23, 92, 211)).save(out, "PNG")
    return out.getvalue()


def _images_on_first_page(response) -> int:
    return len(PdfReader(io.BytesIO(response.data)).pages[0].images)


def _upload(owner_client, data: bytes, name: str = "logo.png"):
    token = csrf_token(owner_client.get("/c/demo/settings").data)
    return owner_client.post(
        "/c/demo/settings/logo",
        data={"csrf_token": token, "logo": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def test_the_owner_uploads_a_logo_and_it_heads_the_statement_until_removed(owner_client, rt, busy):
    # The statement PDF had a slot for a logo with no way to give one: no document had a logo.
    statement = f"/c/demo/customers/{busy.id}/statement.pdf"
    assert _images_on_first_page(owner_client.get(statement)) == 0
    saved = _upload(owner_client, _png())
    assert saved.status_code == 302
    page = parse(owner_client.get("/c/demo/settings").data)
    assert "heads your statements" in page.by_id("logo-state").text
    with_logo = owner_client.get(statement)
    assert _images_on_first_page(with_logo) == 1
    # The name still heads the page under the logo (and closes it in the footer).
    assert words_of(with_logo).count("Acme Supply Co.") >= 2
    letter = owner_client.get(f"/c/demo/customers/{busy.id}/final-notice.pdf")
    assert _images_on_first_page(letter) == 1
    token = csrf_token(owner_client.get("/c/demo/settings").data)
    owner_client.post("/c/demo/settings/logo/remove", data={"csrf_token": token})
    assert _images_on_first_page(owner_client.get(statement)) == 0


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"", "Choose a PNG or JPEG file."),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a PNG or JPEG image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "not a PNG or JPEG image"),  # a forged header
        (b"GIF89a" + b"\x00" * 64, "not a PNG or JPEG image"),
        (_png()[:-40], "not a PNG or JPEG image"),  # cut short
        (_png(5000, 10), "at most 4096 pixels"),
    ],
)
def test_an_upload_that_is_not_a_printable_logo_is_refused_in_words(owner_client, rt, data, said):
    refused = _upload(owner_client, data)
    assert refused.status_code == 400
    assert said in parse(refused.data).find("main").text
    with rt.sessions() as s:
        from arbridge.sync.model import Company

        assert s.scalar(select(Company.logo).where(Company.slug == "demo")) is None


def test_a_logo_over_512_kb_is_refused_before_it_is_read():
    # Checked on the bytes (the web test client leaks the temporary file of so large a form).
    from arbridge.services.documents.logo import LogoRefused, check_logo

    with pytest.raises(LogoRefused, match="larger than 512 KB"):
        check_logo(b"\x89PNG" + b"\x00" * (600 * 1024))
    assert check_logo(_png()) == "PNG"
