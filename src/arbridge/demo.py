"""The demo: a company on the simulated ledger, synced through the real sync layer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select

from arbridge.collections.policy import DEFAULTS
from arbridge.collections.reminder_policy import DEFAULT_STEPS, Step
from arbridge.connectors.demo import generate_demo_ledger
from arbridge.errors import NotFound
from arbridge.runtime import Runtime
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, Connection, CreditNote, Customer, Invoice, Payment
from arbridge.sync.runner import SyncResult
from arbridge.sync.store import (
    add_connection,
    company_today,
    create_company,
    get_company,
    issue_pay_token,
    issue_sign_in_token,
    ledger_connection,
    log_activity,
    owner,
)

DEMO_SLUG = "demo"
DEMO_TENANT = "demobooks-acme"
DEMO_PLANS = {
    **DEFAULTS["plans"],
    "enabled": True,
    "min_balance": "50.00",
    "max_installments": 6,
    "frequencies": ["week", "fortnight", "month"],
}


# The demo's sequence: the default one with a text a week after the due date, so a newcomer sees
# every channel (its texts go to the simulated carrier and appear in the mailbox).
DEMO_STEPS = (
    *DEFAULT_STEPS[:3],
    Step("after-7", 7, "sms", "overdue_friendly"),
    *DEFAULT_STEPS[3:],
)
DEMO_REMINDERS = {"sequences": {"default": [step.to_dict() for step in DEMO_STEPS]}}


# Late fees, on from the start so a newcomer sees one charged: $25 once an invoice of $100 or
# more is 30 days past due, as its own invoice in the demo ledger (the original stays as sent).
# Like a business turning fees on, it does not back-charge every old invoice: it charges those
# that passed their grace period in the last DEMO_LATE_FEES_DAYS_BACK days (on the demo ledger,
# a handful: five), so the first daily run charges a few, not the 88 the old rule would.
DEMO_LATE_FEES = {
    **DEFAULTS["late_fees"],
    "enabled": True,
    "grace_days": 30,
    "flat_fee": "25.00",
    "min_balance": "100.00",
}
DEMO_LATE_FEES_DAYS_BACK = 6


def demo_late_fees(today: date) -> dict[str, Any]:
    """The demo's late-fee settings, charging from DEMO_LATE_FEES_DAYS_BACK days before `today`
    (the demo ledger's dates are written relative to the same day)."""
    since = today - timedelta(days=DEMO_LATE_FEES_DAYS_BACK)
    return {**DEMO_LATE_FEES, "charge_from": since.isoformat()}


SyncFunc = Callable[[Connection, bool], SyncResult]


def _restart_late_fees(rt: Runtime, company_id: int, today: date) -> None:
    """A fresh ledger's dates move with `today`: late fees (when on) charge from the demo's day
    before it again, so a reset charges a handful once more rather than the whole backlog."""
    with transaction(rt.sessions) as session:
        company = session.get(Company, company_id)
        fees = (company.settings or {}).get("late_fees") if company else None
        if company is None or not isinstance(fees, dict) or fees.get("enabled") is not True:
            return
        since = demo_late_fees(today)["charge_from"]
        company.settings = {**company.settings, "late_fees": {**fees, "charge_from": since}}


def _held(rt: Runtime, company_id: int) -> dict[str, list[str]]:
    """The demo ledger's records the company's copy holds (not deleted), by the ledger's kinds:
    what a rebuilt ledger must delete where it no longer has them."""
    with rt.sessions() as session:
        return {
            kind: list(
                session.scalars(
                    select(model.source_id).where(
                        model.company_id == company_id, model.source == "demo", alive
                    )
                )
            )
            for kind, model, alive in (
                ("Customer", Customer, Customer.deleted.is_(False)),
                ("Invoice", Invoice, Invoice.status != "deleted"),
                ("Payment", Payment, Payment.status != "deleted"),
                ("CreditNote", CreditNote, CreditNote.status != "deleted"),
            )
        }


def prepare(
    rt: Runtime, *, sync: SyncFunc, reset: bool = False, echo: Callable[[str], None] = print
) -> tuple[Company, str]:
    """Create (or reuse) the demo company and its ledger, sync it, and issue a sign-in link."""
    with transaction(rt.sessions) as session:
        try:
            company = get_company(session, DEMO_SLUG)
        except NotFound:
            company = create_company(
                session,
                rt.clock,
                name="Acme Supply Co.",
                slug=DEMO_SLUG,
                home_currency="USD",
                timezone="America/Chicago",
                country="US",
                owner_email="owner@acme-supply.example",
                sync_interval_minutes=rt.settings.sync_interval_minutes,
            )
            # The demo shows installment plans on its payment pages and charges late fees
            # from the start.
            company.settings = {
                **(company.settings or {}),
                "plans": DEMO_PLANS,
                "late_fees": demo_late_fees(company_today(company, rt.clock)),
                # Its sequence (with a text), and a monthly statement (with its PDF) on the 1st.
                "reminders": {**DEFAULTS["reminders"], **DEMO_REMINDERS, "statement_day": 1},
            }
        conn = ledger_connection(session, company.id)
        if conn is None:
            conn = add_connection(
                session,
                rt.keyring,
                rt.clock,
                company,
                "demo",
                DEMO_TENANT,
                {"note": "simulated ledger: no real credentials"},
            )
        session.expunge(company)
        session.expunge(conn)
    ledger = rt.demo_ledger(conn.tenant_id)
    full = False
    if reset or not ledger.exists:
        today = company_today(company, rt.clock)
        generate_demo_ledger(ledger, today, replacing=_held(rt, company.id))
        full = True
        _restart_late_fees(rt, company.id, today)
        echo(f"Demo ledger written to {ledger.path}")
    result = sync(conn, full)
    echo(f"Synced: {sum(result.upserted.values())} records")
    with transaction(rt.sessions) as session:
        log_activity(session, rt.clock, company.id, "sync.completed", "Demo ledger synced")
        token = issue_sign_in_token(
            session, rt.clock, owner(session, company), rt.settings.login_link_minutes
        )
        late = session.scalars(
            select(Invoice)
            .where(
                Invoice.company_id == company.id,
                Invoice.is_open,
                Invoice.currency == "USD",
            )
            .order_by(Invoice.due_on)
            .limit(1)
        ).first()
        if late is not None:
            pay = issue_pay_token(session, rt.clock, late)
            echo(f"A customer's payment link for overdue invoice {late.number} (try paying it):")
            echo(f"  {rt.settings.base_url}/pay/{pay}")
            echo("  (or choose 'Pay in installments' there; `arbridge clock advance --days N`")
            echo("  then moves the demo's clock so you can watch the installments charge)")
    return company, f"{rt.settings.base_url}/sign-in/{token}"
