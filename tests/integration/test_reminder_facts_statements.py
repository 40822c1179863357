"""The day's reminder facts are gathered in a fixed number of statements, whatever the number of
invoices that may be due (issue 14: 900-id chunks made a dry run's statements grow with the
ledger, and each invoice came back as a whole row with its lines)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import case, exists, func, select

from arbridge.collections.reminder_policy import reminder_policy
from arbridge.services.reminders.facts import (
    candidate_invoices,
    load_day,
    load_days,
    local_day_start,
)
from arbridge.services.reminders.preview import open_counts, preview
from arbridge.services.reminders.run import run_reminders
from arbridge.services.reminders.sequences import follow_sequence
from arbridge.sync.db import transaction
from arbridge.sync.model import (
    Company,
    Contact,
    Customer,
    CustomerReminderSettings,
    Invoice,
    ReminderSend,
)
from arbridge.sync.store import company_today
from tests.builders import SmallCompany
from tests.integration.remind_support import START, Cust, Inv, build_world, chicago
from tests.web.test_query_counts import counted

HARBOR = Cust("HAR", "Harbor Bakery", "Alice", "alice@harbor.example")
MAPLE = Cust("MAP", "Maple Dental", "Ben", "ben@maple.example")


def _books(rt, slug: str, overdue: int):
    books = SmallCompany(slug=slug, tenant_id=f"facts-{slug}")
    for c in range(3):
        books = books.customer(f"C{c}", f"Customer {c}")
    for n in range(overdue):
        books = books.invoice(f"I{n}", f"C{n % 3}", "10.00", days_overdue=3 + n % 40)
    return books.build(rt)


def test_a_dry_run_asks_as_many_statements_for_1000_overdue_invoices_as_for_10(rt):
    asked = {}
    for overdue in (10, 1000):
        books = _books(rt, f"co{overdue}", overdue)
        with counted(rt) as statements:
            p = preview(rt, books.company)
        assert len(p.loaded.day.decisions) == overdue
        assert {d.invoice.invoice_id for d in p.loaded.day.decisions} == {
            books.invoice(f"I{n}").id for n in range(overdue)
        }
        asked[overdue] = len(statements)
    assert asked[1000] == asked[10], asked


def _candidates_by_claims(session, company_id: int, policy, as_of):
    """The candidates as they were read before 0027: an EXISTS over reminder_sends per invoice
    (the reference the stored highest step must agree with)."""
    first = min(s.offset_days for seq in policy.sequences.values() for s in seq.steps)
    steps = policy.sequence(None).steps
    in_force = case(
        *[
            (Invoice.due_on <= as_of - timedelta(days=s.offset_days), i)
            for i, s in reversed(list(enumerate(steps)))
        ],
        else_=-1,
    )
    own = select(CustomerReminderSettings.customer_id).where(
        CustomerReminderSettings.company_id == company_id,
        CustomerReminderSettings.sequence.is_not(None),
    )
    done = exists().where(
        ReminderSend.invoice_id == Invoice.id, ReminderSend.step_index >= in_force
    )
    return set(
        session.scalars(
            select(Invoice.id).where(
                Invoice.company_id == company_id,
                Invoice.is_open,
                Invoice.due_on <= as_of - timedelta(days=first),
                ~(done & Invoice.customer_id.not_in(own)),
            )
        )
    )


def test_the_stored_highest_step_leaves_out_the_same_invoices_as_the_claims_day_after_day(
    rt, clock
):
    world = build_world(
        rt,
        [HARBOR, MAPLE],
        [
            Inv("A", "HAR", -50, "100.00"),
            Inv("B", "HAR", -9, "60.00"),
            Inv("C", "HAR", -3, "70.00"),
            Inv("D", "HAR", 2, "80.00"),
            Inv("E", "HAR", 12, "90.00"),
            Inv("F", "MAP", -20, "40.00"),
            Inv("G", "MAP", -2, "30.00"),
        ],
    )
    world.set_reminders(sequences={"gentle": [{"offset_days": 1, "template": "overdue"}]})
    with transaction(rt.sessions) as s:
        company = s.get(Company, world.company.id)
        customer = s.get(Customer, world.customer("MAP").id)
        follow_sequence(s, rt.clock, company, customer, "gentle")
    looked_at = set()
    for n in range(0, 40, 3):
        day = START + timedelta(days=n)
        clock.at = chicago(day)
        policy = reminder_policy(world.company.settings)
        with rt.sessions() as s:
            wanted = _candidates_by_claims(s, world.company.id, policy, day)
            got = {r.id for r in candidate_invoices(s, [world.company.id], policy, day)}
        assert got == wanted, day
        looked_at |= got
        world.sync()
        run_reminders(rt, world.company)
        with rt.sessions() as s:
            claimed = dict(
                s.execute(
                    select(ReminderSend.invoice_id, func.max(ReminderSend.step_index)).group_by(
                        ReminderSend.invoice_id
                    )
                ).all()
            )
            stored = dict(
                s.execute(
                    select(Invoice.id, Invoice.highest_step_claimed).where(
                        Invoice.company_id == world.company.id
                    )
                ).all()
            )
        assert stored == {i: claimed.get(i, -1) for i in stored}, day
    # Every invoice came up at some point, and several steps were claimed along the way.
    assert len(looked_at) == 7
    assert len(set(claimed.values())) >= 3


def test_the_open_counts_match_counting_open_balances_whatever_the_unposted_money(rt):
    books = SmallCompany(slug="counts", tenant_id="facts-counts").customer("C", "Customer")
    for n, days in enumerate((40, 20, 5, 0, -5, -20, -40, 60)):
        books = books.invoice(f"I{n}", "C", "100.00", days_overdue=days)
    books = books.build(rt)
    # (ledger balance, unposted): owes nothing, owes part, gave back, ledger at 0 or below.
    figures = [(100_00, 100_00), (100_00, 40_00), (100_00, -30_00), (0, 0), (-5_00, 0)]
    with transaction(rt.sessions) as s:
        for n, (ledger, unposted) in enumerate(figures):
            inv = s.get(Invoice, books.invoice(f"I{n}").id)
            inv.ledger_balance_minor, inv.unposted_minor = ledger, unposted
        s.get(Invoice, books.invoice("I7").id).status = "paid"
    day = books.invoice("I3").due_on
    with rt.sessions() as s:
        for after in (day - timedelta(days=30), day, day + timedelta(days=10)):
            mine = Invoice.company_id == books.company.id
            wanted = (
                s.scalar(select(func.count()).where(mine, Invoice.is_open)),
                s.scalar(select(func.count()).where(mine, Invoice.is_open, Invoice.due_on > after)),
            )
            assert open_counts(s, books.company.id, after) == wanted, after
    assert wanted[0] == 4  # I1 (part), I2 (money given back), I5, I6


# Where each company is, and a mobile number written as its customers would write it there.
PLACES = (
    ("America/Chicago", "US", "(312) 555-0142"),
    ("Asia/Tokyo", "JP", "090-1234-5678"),
    ("Europe/London", "GB", "07911 123456"),
)


def test_many_companies_decided_together_get_the_decisions_each_gets_alone_in_fixed_statements(
    rt,
):
    """Texts included: each company's customers' numbers are read in its own country, and "a
    text a day" counts in its own timezone, as when it is decided alone."""
    companies = []
    for n in range(6):
        tz, country, _phone = PLACES[n % 3]
        books = SmallCompany(
            slug=f"many{n}", tenant_id=f"facts-many{n}", timezone=tz, country=country
        )
        texts_first = [
            {"offset_days": 3, "channel": "sms", "template": "overdue"},
            {"offset_days": 8, "template": "overdue_firm"},
        ]
        if n % 3 == 1:  # another policy shape: its own first step
            texts_first = [{"offset_days": 1, "channel": "sms", "template": "overdue"}]
        books.settings = {"reminders": {"sequences": {"default": texts_first}}}
        if n == 5:  # settings that cannot be used: held, with the reason
            books.settings = {"reminders": {"sequences": {"default": [{"offset_days": "soon"}]}}}
        for c in range(2):
            books = books.customer(f"C{c}", f"Customer {n}-{c}")
        for i, days in enumerate((1, 3, 8, 20, -4)):
            books = books.invoice(f"I{i}", f"C{i % 2}", "10.00", days_overdue=days + n)
        companies.append(books.build(rt).company)
    now = rt.clock.now()
    # A text sent just before the latest of the three days began: today where the day began
    # earlier, yesterday where it began last.
    sent = max(local_day_start(now, tz) for tz, _, _ in PLACES) - timedelta(minutes=1)
    with transaction(rt.sessions) as s:
        for n, company in enumerate(companies):
            for contact in s.scalars(
                select(Contact).join(Customer).where(Customer.company_id == company.id)
            ):
                contact.phone, contact.phone_e164 = PLACES[n % 3][2], None
                contact.sms_consent_at = now - timedelta(days=30)
            first = s.scalars(
                select(Invoice).where(Invoice.company_id == company.id).order_by(Invoice.id)
            ).first()
            texted = s.scalars(select(Contact).where(Contact.customer_id == first.customer_id))
            s.add(
                ReminderSend(
                    company_id=company.id,
                    invoice_id=first.id,
                    customer_id=first.customer_id,
                    contact_id=texted.first().id,
                    step_key="an-earlier-text",
                    step_index=-1,
                    channel="sms",
                    run_on=sent.date(),
                    outbox_key=f"text:{company.id}",
                    status="sent",
                    currency="USD",
                    balance_minor=1000,
                    created_at=sent,
                )
            )
    as_of = company_today(companies[0], rt.clock)
    asked = {}
    for few in (2, 6):
        with counted(rt) as statements, rt.sessions() as s:
            together = load_days(s, rt, [(c, as_of) for c in companies[:few]])
        asked[few] = len(statements)
        for company, loaded in zip(companies[:few], together, strict=True):
            with rt.sessions() as s:
                alone = load_day(s, rt, company, as_of)
            assert loaded.company.id == company.id
            assert (loaded.hold, loaded.policy) == (alone.hold, alone.policy)
            assert loaded.day == alone.day, company.slug
    assert together[5].hold and not together[0].hold
    assert sum(len(loaded.day.due) for loaded in together) >= 10
    messages = [m for loaded in together for m in loaded.day.messages]
    texts = [m for m in messages if m.channel == "sms"]
    assert {m.contact.phone[:3] for m in texts if m.contact} >= {"+13", "+81", "+44"}
    texted_today = {c.texted_today for m in messages for c in m.customer.contacts}
    assert texted_today == {0, 1}
    assert asked[6] == asked[2], asked  # two policy shapes either way: two candidate queries
