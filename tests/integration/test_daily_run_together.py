"""The daily reminders of many companies run together (issue 14: one company at a time, ten
statements each, a run over 10,000 companies took half a minute): the same claims, outbox rows,
call tasks and activity as each company's run alone, nothing more on a rerun, in a number of
statements that does not grow with the companies, and through the worker only for the
companies whose daily job is due."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update

from arbridge.services.reminders.run import run_reminders, run_reminders_of
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Activity,
    CallTask,
    Company,
    CompanyJob,
    Contact,
    Customer,
    Invoice,
    OutboxMessage,
    PayToken,
    ReminderSend,
)
from arbridge.worker import claim_and_run_collections
from tests.builders import SmallCompany
from tests.web.test_query_counts import counted

# Texts first, then an email, then a call: every channel a run writes.
TEXTS_FIRST = [
    {"offset_days": 3, "channel": "sms", "template": "overdue"},
    {"offset_days": 10, "template": "overdue_firm"},
    {"offset_days": 20, "channel": "call", "template": "call_guide"},
]


def _company(rt, n: int, *, escalations: bool = True) -> Company:
    """Three customers owing invoices at several steps; odd companies text first (their
    contacts have mobile numbers and consent), even ones follow the default sequence (with
    its escalations to the owner, unless `escalations` is off)."""
    books = SmallCompany(slug=f"together{n}", tenant_id=f"together-{n}")
    if n % 2:
        books.settings = {"reminders": {"sequences": {"default": TEXTS_FIRST}}}
    for c in range(3):
        books = books.customer(f"C{c}", f"Customer {n}-{c}")
    overdue = (3, 10, 20, -3, 1, 31, 46) if escalations else (3, 10, 20, -3, 1)
    for i, days in enumerate(overdue):
        books = books.invoice(f"I{i}", f"C{i % 3}", f"{10 + i}.00", days_overdue=days)
    company = books.build(rt).company
    if n % 2:
        with transaction(rt.sessions) as s:
            s.execute(
                update(Contact)
                .where(
                    Contact.customer_id.in_(
                        select(Customer.id).where(Customer.company_id == company.id)
                    )
                )
                .values(phone="(312) 555-0142", phone_e164="+13125550142")
                .values(sms_consent_at=rt.clock.now() - timedelta(days=30))
            )
    return company


def _queued(rt, companies: list[Company], since: int) -> dict[str, Any]:
    """What the runs wrote for these companies, with the payment links named by what they are
    for instead of their row ids, so two runs over the same data compare equal (outbox keys
    name no row: `_message_key`)."""
    ids = [c.id for c in companies]
    with rt.sessions() as s:
        sends = s.scalars(select(ReminderSend).where(ReminderSend.company_id.in_(ids))).all()
        links = {t.id: (t.invoice_id, t.customer_id) for t in s.scalars(select(PayToken))}
        outbox = []
        for o in s.scalars(select(OutboxMessage).where(OutboxMessage.company_id.in_(ids))):
            p = dict(o.payload)
            if "statement_link_id" in p:
                assert links[p.pop("statement_link_id")] == (None, p["customer_id"])
                for inv in p["invoices"]:
                    assert links[inv.pop("pay_link_id")] == (inv["id"], p["customer_id"])
            text = {k: v for k, v in p.items() if k not in ("text", "html")}
            outbox.append((o.company_id, o.kind, o.key, o.next_attempt_at, o.status, text))
        activity = [
            (
                a.company_id,
                a.kind,
                a.message,
                a.customer_id,
                a.invoice_id,
                *sorted(a.data.items()),
            )
            for a in s.scalars(
                select(Activity).where(Activity.company_id.in_(ids), Activity.id > since)
            )
        ]
        return {
            "claims": sorted(
                (
                    r.company_id,
                    r.invoice_id,
                    r.step_key,
                    r.step_index,
                    r.channel,
                    r.status,
                    r.contact_id,
                    r.balance_minor,
                    r.run_on,
                    r.sent_at,
                    r.synced_at,
                    r.outbox_key,
                )
                for r in sends
            ),
            "outbox": sorted(outbox, key=repr),
            "calls": sorted(
                (t.company_id, t.key, t.reason, tuple(t.invoice_ids))
                for t in s.scalars(select(CallTask).where(CallTask.company_id.in_(ids)))
            ),
            "activity": sorted(activity, key=repr),
            "highest": sorted(
                s.execute(
                    select(Invoice.id, Invoice.highest_step_claimed).where(
                        Invoice.company_id.in_(ids)
                    )
                ).tuples()
            ),
        }


def _undo(rt, companies: list[Company], since: int) -> None:
    ids = [c.id for c in companies]
    with transaction(rt.sessions) as s:
        for table in (OutboxMessage, ReminderSend, CallTask, PayToken):
            s.execute(delete(table).where(table.company_id.in_(ids)))
        s.execute(delete(Activity).where(Activity.company_id.in_(ids), Activity.id > since))
        s.execute(
            update(Invoice).where(Invoice.company_id.in_(ids)).values(highest_step_claimed=-1)
        )


def _last_activity(rt) -> int:
    with rt.sessions() as s:
        return max(s.scalars(select(Activity.id)))


def test_companies_reminded_together_queue_exactly_what_each_queues_alone(rt):
    companies = [_company(rt, n) for n in range(4)]
    since = _last_activity(rt)
    alone = {c.id: run_reminders(rt, c) for c in companies}
    each = _queued(rt, companies, since)
    _undo(rt, companies, since)
    together = run_reminders_of(rt, companies)
    assert _queued(rt, companies, since) == each
    assert together == alone
    # Every channel and the escalations were there to compare.
    assert {o[1] for o in each["outbox"]} == {"email", "sms"}
    assert each["calls"] and any("escalations" in (o[2] or "") for o in each["outbox"])
    assert all(r.emails + r.texts for r in alone.values())


def test_a_second_run_together_queues_nothing_more(rt):
    companies = [_company(rt, n) for n in range(3)]
    since = _last_activity(rt)
    first = run_reminders_of(rt, companies)
    queued = _queued(rt, companies, since)
    again = run_reminders_of(rt, companies)
    assert _queued(rt, companies, since) == queued
    assert sum(r.emails + r.texts + r.calls for r in first.values()) >= 6
    assert all(r.emails == r.texts == r.calls == 0 for r in again.values())


def test_reminding_more_companies_together_takes_no_more_statements(rt):
    few = [_company(rt, n, escalations=False) for n in range(2)]
    more = [_company(rt, n, escalations=False) for n in range(2, 8)]
    asked = {}
    for group in (few, more):
        with counted(rt) as statements:
            results = run_reminders_of(rt, group)
        assert all(r.emails + r.texts + r.calls >= 2 for r in results.values())
        asked[len(group)] = len(statements)
    assert asked[6] == asked[2], asked


def test_a_run_together_wrote_every_claim_twice_once_with_its_outbox_key(rt):
    """On PostgreSQL each claim's outbox key, once UPDATEd after its INSERT (the key named the
    first claim's row id), was a second version of 20,000 claims a batch (issue 14)."""
    companies = [_company(rt, n) for n in range(2)]
    with counted(rt) as statements:
        results = run_reminders_of(rt, companies)
    assert sum(r.emails + r.texts for r in results.values()) >= 4
    assert not [q for q in statements if q.lstrip().upper().startswith("UPDATE REMINDER_SENDS")]
    with rt.sessions() as s:
        keys = set(s.scalars(select(OutboxMessage.key)))
        claims = s.execute(select(ReminderSend.channel, ReminderSend.outbox_key)).all()
    assert {channel for channel, _ in claims} >= {"email", "sms", "call"}
    for channel, key in claims:
        assert (key in keys) if channel in ("email", "sms") else key is None


def test_the_worker_reminds_the_due_companies_together_and_leaves_the_others_alone(rt):
    due = [_company(rt, n) for n in range(3)]
    later = _company(rt, 3)
    now = rt.clock.now()
    with transaction(rt.sessions) as s:
        s.execute(
            update(CompanyJob)
            .where(CompanyJob.company_id == later.id, CompanyJob.job == "collections")
            .values(next_run_at=now + timedelta(hours=5))
        )
    since = _last_activity(rt)
    assert claim_and_run_collections(rt, "w1") == 3
    assert claim_and_run_collections(rt, "w1") == 0
    with rt.sessions() as s:
        jobs = {
            j.company_id: j
            for j in s.scalars(select(CompanyJob).where(CompanyJob.job == "collections"))
        }
        for company in due:
            job = jobs[company.id]
            assert (job.runs, job.last_worker, job.last_error) == (1, "w1", None)
            assert job.next_run_at > now
            kinds = s.scalars(
                select(Activity.kind).where(Activity.company_id == company.id, Activity.id > since)
            ).all()
            assert "collections.daily" in kinds and "reminders.queued" in kinds
        assert (jobs[later.id].runs, jobs[later.id].last_worker) == (0, None)
        assert jobs[later.id].next_run_at == now + timedelta(hours=5)
        for table in (ReminderSend, OutboxMessage, CallTask, PayToken):
            assert not s.scalars(select(table.id).where(table.company_id == later.id)).all()
        assert not s.scalars(
            select(Activity.id).where(Activity.company_id == later.id, Activity.id > since)
        ).all()
    # Each due company queued through the worker what its run alone queues.
    through_worker = _queued(rt, due, since)
    _undo(rt, due, since)
    with transaction(rt.sessions) as s:
        s.execute(delete(Activity).where(Activity.id > since))
    for company in due:
        run_reminders(rt, company)
    alone = _queued(rt, due, since)
    worker_only = {"collections.daily"}
    through_worker["activity"] = [a for a in through_worker["activity"] if a[1] not in worker_only]
    assert through_worker == alone


def test_a_pooled_connection_has_the_default_page_cache_again_after_a_run_together(rt):
    """SQLite: the run together reads and writes with a sync's larger page cache (issue 14);
    the connection goes back to the pool with SQLite's default 2 MB."""
    from arbridge.sync.db import DEFAULT_CACHE_KIB

    companies = [_company(rt, n, escalations=False) for n in range(2)]
    assert all(r.emails + r.texts for r in run_reminders_of(rt, companies).values())
    if rt.engine.dialect.name != "sqlite":
        return
    with rt.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA cache_size").scalar() == DEFAULT_CACHE_KIB == -2000
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
