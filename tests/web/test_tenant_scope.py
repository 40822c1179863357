"""Every owner view that loads a row by an id from the URL, the query string or a form loads it
through the one tenant-scoped `get_or_404`: another company's id is a 404, shows nothing of it
and changes nothing (the pattern of test_isolation.py, for every model the views load so)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from arbridge.services.payments.plans import make_offer
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Activity,
    CallTask,
    CollectedPayment,
    Contact,
    Customer,
    CustomerReminderSettings,
    Invitation,
    Invoice,
    InvoiceHold,
    LateFeeAssessment,
    MailMessage,
    OutboxMessage,
    PayToken,
    Plan,
    SmsReply,
    User,
)
from tests.web.conftest import OTHER_SLUG, assert_friendly_error, csrf_token


@dataclass(frozen=True)
class OtherRows:
    invoice: int
    customer: int
    mail: int
    task: int
    hold: int
    payment: int
    user: int
    invitation: int
    plan: int
    charge: int
    secrets: tuple[str, ...]
    contact: int = 0
    reply: int = 0


@pytest.fixture
def other_rows(rt, other_company) -> OtherRows:
    """One row of every model the owner's views load by id, all of them company B's."""
    now = rt.clock.now()
    company_id = other_company.company.id
    with transaction(rt.sessions) as s:
        inv = s.get(Invoice, other_company.invoice_ids[0])
        mail = MailMessage(
            company_id=company_id,
            kind="reminder",
            customer_id=inv.customer_id,
            to_addr="ap@zebulon.example",
            subject="Borealis overdue ZQX-7001 confidential",
            text_body="Secret reminder body for Zebulon",
            html_body="<p>Secret reminder body for Zebulon</p>",
            message_id="<bq-1@borealis.example>",
            transport="mailbox",
            created_at=now,
        )
        task = CallTask(
            company_id=company_id,
            customer_id=inv.customer_id,
            key="bq-call-1",
            step_key="call",
            invoice_ids=[inv.id],
            reason="Call Zebulon about ZQX-7001",
            created_at=now,
        )
        hold = InvoiceHold(
            company_id=company_id,
            invoice_id=inv.id,
            kind="dispute",
            message="Zebulon disputes the quartz delivery",
            created_by="customer",
            created_at=now,
        )
        payment = CollectedPayment(
            company_id=company_id,
            customer_id=inv.customer_id,
            payment_intent_id="pi_borealis_1",
            method="card",
            currency="USD",
            amount_minor=500_00,
            unapplied_minor=500_00,
            status="succeeded",
            created_at=now,
            updated_at=now,
            succeeded_at=now,
        )
        # B's owner asked a colleague of B's in, and the colleague of an accepted invitation.
        owner_id = s.scalar(select(User.id).where(User.company_id == company_id))
        colleague = User(company_id=company_id, email="ann@borealis.example", created_at=now)
        s.add_all([mail, task, hold, payment, colleague])
        s.flush()
        invitation = Invitation(
            company_id=company_id,
            email="bo@borealis.example",
            invited_by=owner_id,
            token_hash="b" * 64,
            created_at=now,
            expires_at=now + timedelta(days=7),
        )
        s.add(invitation)
        charge = LateFeeAssessment(
            company_id=company_id,
            invoice_id=inv.id,
            customer_id=inv.customer_id,
            kind="fee",
            period="once",
            currency="USD",
            amount_minor=25_00,
            description="Late fee on ZQX-7001",
            basis="a flat fee",
            assessed_on=now.date(),
            status="posted",
            outbox_key="ledger_fee_invoice:borealis",
            created_at=now,
        )
        s.add(charge)
        contact = Contact(
            company_id=company_id,
            customer_id=inv.customer_id,
            source="demo",
            source_id="bq-contact-1",
            synced_at=now,
            email="ap@zebulon.example",
            phone_e164="+13125550166",
        )
        s.add(contact)
        s.flush()
        reply = SmsReply(
            company_id=company_id,
            contact_id=contact.id,
            message_sid="SM" + "b" * 32,
            from_number="+13125550166",
            body="Zebulon texts back",
            received_at=now,
        )
        s.add(reply)
        s.flush()
        s.commit()
        plan = make_offer(
            rt, company_id=company_id, invoice_ids=[inv.id], installments=2, every="month"
        ).plan_id
        rows = OtherRows(
            invoice=inv.id,
            customer=inv.customer_id,
            mail=mail.id,
            task=task.id,
            hold=hold.id,
            payment=payment.id,
            user=colleague.id,
            invitation=invitation.id,
            plan=plan,
            charge=charge.id,
            contact=contact.id,
            reply=reply.id,
            secrets=(*other_company.secrets, "Secret reminder body", "quartz delivery"),
        )
    return rows


# (method, path under /c/<slug>, form fields, the model it loads): every view that takes an id.
def targets(o: OtherRows) -> list[tuple[str, str, dict[str, str], str]]:
    return [
        ("GET", f"/invoices/{o.invoice}", {}, "Invoice"),
        ("POST", f"/invoices/{o.invoice}/pay-link", {}, "Invoice"),
        ("POST", f"/invoices/{o.invoice}/revoke-links", {}, "Invoice"),
        ("POST", f"/invoices/{o.invoice}/pause", {}, "Invoice"),
        ("POST", f"/invoices/{o.invoice}/send", {}, "Invoice"),
        ("POST", "/invoices/bulk", {"action": "pause", "invoice_id": str(o.invoice)}, "Invoice"),
        ("GET", f"/reminders?invoice_id={o.invoice}", {}, "Invoice"),
        ("GET", f"/reminders/email.html?invoice_id={o.invoice}", {}, "Invoice"),
        ("POST", "/reminders/test-send", {"invoice_id": str(o.invoice)}, "Invoice"),
        ("POST", f"/customers/{o.customer}/statement-link", {}, "Customer"),
        ("POST", f"/customers/{o.customer}/sequence", {"sequence": "default"}, "Customer"),
        ("POST", f"/customers/{o.customer}/revoke-statement-links", {}, "Customer"),
        ("POST", f"/customers/{o.customer}/do-not-chase", {}, "Customer"),
        ("POST", f"/customers/{o.customer}/late-fees-exempt", {"exempt": "1"}, "Customer"),
        ("POST", f"/late-fees/{o.charge}/waive", {}, "LateFeeAssessment"),
        ("POST", f"/insight/customers/{o.customer}/limit/approve", {}, "Customer"),
        ("POST", f"/insight/customers/{o.customer}/limit/decline", {}, "Customer"),
        ("POST", f"/insight/customers/{o.customer}/limit", {"limit": "5"}, "Customer"),
        ("POST", f"/customers/{o.customer}/agency", {}, "Customer"),
        ("GET", f"/customers/{o.customer}/agency", {}, "Customer"),
        ("POST", f"/customers/{o.customer}/agency", {"confirmed": "yes"}, "Customer"),
        ("POST", f"/customers/{o.customer}/agency/undo", {}, "Customer"),
        ("GET", f"/customers/{o.customer}/case-file.json", {}, "Customer"),
        ("GET", f"/customers/{o.customer}/case-file.pdf", {}, "Customer"),
        ("GET", f"/customers/{o.customer}/statement.pdf", {}, "Customer"),
        ("GET", f"/customers/{o.customer}/final-notice.pdf", {}, "Customer"),
        ("GET", f"/customers/{o.customer}", {}, "Customer"),
        ("GET", f"/payments?customer={o.customer}", {}, "Customer"),
        ("POST", f"/customers/{o.customer}/contact", {"email": "x@example.com"}, "Customer"),
        ("POST", f"/customers/{o.customer}/timezone", {"timezone": "Europe/Paris"}, "Customer"),
        ("POST", f"/customers/{o.customer}/notes", {"note": "a note"}, "Customer"),
        ("GET", f"/mailbox/{o.mail}", {}, "MailMessage"),
        ("GET", f"/mailbox/{o.mail}/email.html", {}, "MailMessage"),
        ("POST", f"/calls/{o.task}/done", {"outcome": "reached"}, "CallTask"),
        ("POST", f"/holds/{o.hold}/resolve", {"resolution": "resolved"}, "InvoiceHold"),
        ("POST", f"/payments/{o.payment}/refund", {}, "CollectedPayment"),
        ("POST", f"/users/{o.user}/remove", {}, "User"),
        ("POST", f"/users/{o.user}/role", {"role": "viewer"}, "User"),
        ("POST", f"/invitations/{o.invitation}/revoke", {}, "Invitation"),
        ("GET", f"/plans/{o.plan}", {}, "Plan"),
        ("POST", f"/plans/{o.plan}/pause", {}, "Plan"),
        ("POST", f"/plans/{o.plan}/resume", {}, "Plan"),
        ("POST", f"/plans/{o.plan}/cancel", {}, "Plan"),
        ("POST", f"/plans/{o.plan}/installments/1/move", {"due_on": "2030-01-01"}, "Plan"),
        ("GET", f"/plans/new?customer={o.customer}", {}, "Customer"),
        ("POST", f"/contacts/{o.contact}/sms-consent", {"consent": "yes", "note": "x"}, "Contact"),
        ("POST", f"/sms-replies/{o.reply}/done", {}, "SmsReply"),
        ("POST", f"/customers/{o.customer}/plan-choice", {"choice": "deny"}, "Customer"),
    ]


def _state(rt, o: OtherRows) -> tuple:
    """Everything the targets could change in company B."""
    with rt.sessions() as s:
        inv = s.get(Invoice, o.invoice)
        cust = s.get(Customer, o.customer)
        return (
            inv.paused,
            cust.do_not_chase,
            s.get(CallTask, o.task).done_at,
            s.get(InvoiceHold, o.hold).resolved_at,
            s.get(CollectedPayment, o.payment).refunded_minor,
            s.get(User, o.user) is not None,
            s.get(Invitation, o.invitation).revoked_at,
            s.get(Plan, o.plan).status,
            [(i.due_on, i.status) for i in s.get(Plan, o.plan).installments],
            s.get(LateFeeAssessment, o.charge).status,
            s.get(Contact, o.contact).sms_consent_at,
            s.get(SmsReply, o.reply).handled_at,
            s.scalar(select(func.count()).select_from(PayToken)),
            s.scalar(select(func.count()).select_from(CustomerReminderSettings)),
            s.scalar(select(func.count()).select_from(OutboxMessage)),
            s.scalar(
                select(func.count())
                .select_from(Activity)
                .where(Activity.company_id == inv.company_id)
            ),
        )


def test_every_id_route_is_covered(app, other_rows):
    """A new owner view that takes an id in its path must join the list below."""
    covered = {path.split("?")[0] for _m, path, _f, _k in targets(other_rows)}
    ids = {
        "invoice_id": other_rows.invoice,
        "customer_id": other_rows.customer,
        "mail_id": other_rows.mail,
        "task_id": other_rows.task,
        "hold_id": other_rows.hold,
        "payment_id": other_rows.payment,
        "user_id": other_rows.user,
        "invitation_id": other_rows.invitation,
        "plan_id": other_rows.plan,
        "number": 1,
        "charge_id": other_rows.charge,
        "contact_id": other_rows.contact,
        "reply_id": other_rows.reply,
    }
    for rule in app.url_map.iter_rules():
        names = {n for n in rule.arguments if f"<int:{n}>" in rule.rule}
        if not rule.rule.startswith("/c/<slug>/") or not names:
            continue
        path = rule.rule.removeprefix("/c/<slug>")
        for name in names:
            path = path.replace(f"<int:{name}>", str(ids[name]))
        assert path in covered, f"{rule.rule} loads a row by id: add it to targets()"


def test_another_companys_ids_are_not_found_on_every_view(
    owner_client, rt, other_company, other_rows
):
    before = _state(rt, other_rows)
    csrf = csrf_token(owner_client.get("/c/demo/settings").data)
    for method, path, form, model in targets(other_rows):
        for slug in ("demo", OTHER_SLUG):
            url = f"/c/{slug}{path}"
            if method == "GET":
                response = owner_client.get(url)
            else:
                response = owner_client.post(url, data={"csrf_token": csrf, **form})
            assert response.status_code == 404, (url, model, response.status_code)
            body = response.get_data(as_text=True)
            assert "Page not found" in body, url
            assert_friendly_error(body, *other_rows.secrets)
    assert _state(rt, other_rows) == before


def test_a_refund_never_sends_the_owner_back_to_another_companys_invoice(
    owner_client, rt, demo_company, other_rows
):
    """The refund form's `invoice_id` (where to go back to) is scoped too: another company's
    invoice id falls back to the dashboard; the owner's own invoice is where they go back."""
    now = rt.clock.now()
    with transaction(rt.sessions) as s:
        mine = s.scalar(select(Invoice).where(Invoice.company_id == demo_company.id).limit(1))
        payment = CollectedPayment(
            company_id=demo_company.id,
            customer_id=mine.customer_id,
            payment_intent_id="pi_demo_nothing_over",
            method="card",
            currency="USD",
            amount_minor=100_00,
            status="succeeded",
            created_at=now,
            updated_at=now,
            succeeded_at=now,
        )
        s.add(payment)
        s.flush()
        payment_id, my_invoice = payment.id, mine.id
    csrf = csrf_token(owner_client.get("/c/demo/").data)
    url = f"/c/demo/payments/{payment_id}/refund"
    theirs = owner_client.post(
        url, data={"csrf_token": csrf, "invoice_id": str(other_rows.invoice)}
    )
    assert theirs.status_code == 302
    assert theirs.headers["Location"] == "/c/demo/#payments"
    own = owner_client.post(url, data={"csrf_token": csrf, "invoice_id": str(my_invoice)})
    assert own.status_code == 302
    assert own.headers["Location"] == f"/c/demo/invoices/{my_invoice}"
