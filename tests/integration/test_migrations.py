import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError

from arbridge.sync import db
from arbridge.sync.model import Base, Invoice
from tests.conftest import ON_POSTGRES, PG_URL
from tests.unit.sync.test_invoice_balance import CASES


def test_migrations_match_the_model(rt):
    with rt.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata
        )
    assert diff == []
    assert db.current_revision(rt.engine) == db.head_revision()


def test_the_head_read_from_the_scripts_is_alembics_own():
    assert [db.head_revision()] == ScriptDirectory(str(db.MIGRATIONS)).get_heads()


def test_each_revision_reads_as_alembic_has_it_at_every_step(blank_engine):
    assert db.current_revision(blank_engine) is None  # no tables: not initialised
    cfg = db.alembic_config(blank_engine)
    for revision in ("0001", "0020", "head"):
        command.upgrade(cfg, revision)
        with blank_engine.connect() as conn:
            expected = MigrationContext.configure(conn).get_current_revision()
        assert db.current_revision(blank_engine) == expected
    assert expected == db.head_revision()


@pytest.fixture
def blank_engine(tmp_path) -> Iterator[Engine]:
    """A database with no tables yet, to walk migrations up and down on."""
    if not ON_POSTGRES:
        engine = db.make_engine(f"sqlite:///{tmp_path / 'blank.db'}")
        yield engine
        engine.dispose()
        return
    schema = f"arbridge_test_blank_{os.getpid()}"
    admin = db.make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    engine = db.make_engine(f"{PG_URL}{sep}options=-csearch_path%3D{schema}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


INSERT_INVOICE = text(
    "INSERT INTO invoices (id, company_id, customer_id, issued_on, due_on, currency,"
    " exchange_rate, total_minor, balance_minor, status, paused, source, source_id, synced_at)"
    " VALUES (:id, 1, 1, '2026-10-01', '2026-10-31', 'USD', '1', :total, :balance, :status,"
    " false, 'demo', :source_id, '2026-11-24 15:00:00')"
)


def insert_company_and_customer(conn) -> None:
    """Company 1 and its customer 1, as any migration since 0013 keeps them."""
    conn.execute(
        text(
            "INSERT INTO companies (id, name, slug, home_currency, timezone, country,"
            " sync_interval_minutes, collections_hour, settings, created_at) VALUES"
            " (1, 'Acme', 'acme', 'USD', 'America/Chicago', 'US', 15, 9, '{}',"
            " '2026-11-24 15:00:00')"
        )
    )
    conn.execute(
        text(
            "INSERT INTO customers (id, company_id, name, active, deleted, do_not_chase,"
            " source, source_id, synced_at) VALUES"
            " (1, 1, 'Bo', true, false, false, 'demo', 'C-1', '2026-11-24 15:00:00')"
        )
    )


def test_0014_splits_each_balance_into_the_ledger_s_and_the_unposted_and_back(blank_engine):
    """Upgrading keeps every open balance (the ledger's figure, nothing unposted); going back
    makes the open balance the one balance again, whatever was unposted by then."""
    cfg = db.alembic_config(blank_engine)
    command.upgrade(cfg, "0013")
    rows = {1: (100_00, 100_00, "open"), 2: (100_00, 40_00, "open"), 3: (50_00, 0, "paid")}
    with blank_engine.begin() as conn:
        insert_company_and_customer(conn)
        for n, (total, balance, status) in rows.items():
            conn.execute(
                INSERT_INVOICE,
                {
                    "id": n,
                    "total": total,
                    "balance": balance,
                    "status": status,
                    "source_id": f"I{n}",
                },
            )

    command.upgrade(cfg, "0014")
    with blank_engine.begin() as conn:
        split = conn.execute(
            text("SELECT id, ledger_balance_minor, unposted_minor FROM invoices ORDER BY id")
        ).all()
        assert [tuple(r) for r in split] == [(1, 100_00, 0), (2, 40_00, 0), (3, 0, 0)]
        # Collected here and not yet in the ledger: 40.00 on the first, all of the second.
        conn.execute(text("UPDATE invoices SET unposted_minor = 4000 WHERE id IN (1, 2)"))
        # A payment given back that the ledger still shows as paid.
        conn.execute(text("UPDATE invoices SET unposted_minor = -2500 WHERE id = 3"))

    command.downgrade(cfg, "0013")
    with blank_engine.connect() as conn:
        back = conn.execute(text("SELECT id, balance_minor FROM invoices ORDER BY id")).all()
        columns = {c["name"] for c in inspect(conn).get_columns("invoices")}
    assert [tuple(r) for r in back] == [(1, 60_00), (2, 0), (3, 25_00)]
    assert "ledger_balance_minor" not in columns and "unposted_minor" not in columns
    command.upgrade(cfg, "head")
    assert db.current_revision(blank_engine) == db.head_revision()


def test_0015_makes_the_outbox_provider_ref_text_and_back(blank_engine):
    cfg = db.alembic_config(blank_engine)
    command.upgrade(cfg, "0015")
    with blank_engine.connect() as conn:
        [ref] = [c for c in inspect(conn).get_columns("outbox") if c["name"] == "provider_ref"]
    assert getattr(ref["type"], "length", None) is None  # text: any number of Xero payment ids
    command.downgrade(cfg, "0014")
    with blank_engine.connect() as conn:
        [ref] = [c for c in inspect(conn).get_columns("outbox") if c["name"] == "provider_ref"]
    assert ref["type"].length == 200
    command.upgrade(cfg, "head")
    assert db.current_revision(blank_engine) == db.head_revision()


def test_0016_moves_nothing_up_and_puts_a_lone_grant_back_on_its_connection(blank_engine):
    """Upgrading adds shared grants and per-company identities without touching a row; going
    back puts a grant's tokens back on its one connection, and refuses when a grant or an
    identity is shared (revision 0015 could hold neither)."""
    cfg = db.alembic_config(blank_engine)
    command.upgrade(cfg, "0016")
    with blank_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO companies (id, name, slug, home_currency, timezone, country,"
                " sync_interval_minutes, collections_hour, settings, created_at) VALUES"
                " (1, 'Acme', 'acme', 'NZD', 'UTC', 'NZ', 15, 9, '{}', '2026-11-24 15:00:00'),"
                " (2, 'Bolt', 'bolt', 'NZD', 'UTC', 'NZ', 15, 9, '{}', '2026-11-24 15:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO oauth_grants (id, provider, credentials_encrypted, created_at)"
                " VALUES (1, 'xero', 'sealed-tokens', '2026-11-24 15:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO connections (id, company_id, provider, tenant_id, status,"
                " created_at, grant_id) VALUES"
                " (1, 1, 'xero', 'T-1', 'active', '2026-11-24 15:00:00', 1),"
                " (2, 2, 'xero', 'T-2', 'active', '2026-11-24 15:00:00', 1)"
            )
        )
    with pytest.raises(RuntimeError, match="one Xero consent"):
        command.downgrade(cfg, "0015")
    with blank_engine.begin() as conn:
        conn.execute(text("DELETE FROM connections WHERE id = 2"))
    command.downgrade(cfg, "0015")
    with blank_engine.connect() as conn:
        back = conn.execute(text("SELECT credentials_encrypted FROM connections")).scalar()
        columns = {c["name"] for c in inspect(conn).get_columns("connections")}
    assert back == "sealed-tokens" and "grant_id" not in columns
    command.upgrade(cfg, "head")
    assert db.current_revision(blank_engine) == db.head_revision()


INSERT_DELIVERY = text(
    "INSERT INTO webhook_deliveries (id, provider, received_at, headers, body, events, repeats)"
    " VALUES (:id, :provider, '2026-11-24 15:00:00', '{}', '{}', 1, 0)"
)
INSERT_EVENT = text(
    "INSERT INTO webhook_events (id, provider, event_id, event_type, delivery_id, payload,"
    " received_at, status, attempts, next_attempt_at) VALUES (:id, :provider, :event_id, 'x',"
    " 1, '{}', '2026-11-24 15:00:00', 'pending', 0, '2026-11-24 15:00:00')"
)


def _webhook_rows(engine: Engine) -> list[tuple[str, ...]]:
    """Each event's provider and id, then each delivery's provider."""
    with engine.connect() as conn:
        events = conn.execute(text("SELECT provider, event_id FROM webhook_events ORDER BY id"))
        deliveries = conn.execute(text("SELECT provider FROM webhook_deliveries ORDER BY id"))
        return [tuple(r) for r in events] + [tuple(r) for r in deliveries]


def test_0026_lets_twilio_into_the_inbox_keeping_every_event_and_back(blank_engine):
    """Upgrading widens both CHECK constraints to 'twilio' and keeps every stored event (on
    SQLite the deliveries' table is copied, and dropping the old one would cascade to its
    events); going back removes Twilio's rows and refuses 'twilio' again."""
    cfg = db.alembic_config(blank_engine)
    command.upgrade(cfg, "0025")
    with blank_engine.begin() as conn:
        conn.execute(INSERT_DELIVERY, {"id": 1, "provider": "stripe"})
        conn.execute(INSERT_EVENT, {"id": 1, "provider": "stripe", "event_id": "evt_1"})
    with pytest.raises(IntegrityError), blank_engine.begin() as conn:
        conn.execute(INSERT_DELIVERY, {"id": 2, "provider": "twilio"})

    command.upgrade(cfg, "0026")
    with blank_engine.begin() as conn:
        conn.execute(INSERT_DELIVERY, {"id": 2, "provider": "twilio"})
        conn.execute(INSERT_EVENT, {"id": 2, "provider": "twilio", "event_id": "AC1:SM1"})
    assert _webhook_rows(blank_engine) == [
        ("stripe", "evt_1"),
        ("twilio", "AC1:SM1"),
        ("stripe",),
        ("twilio",),
    ]
    with pytest.raises(IntegrityError), blank_engine.begin() as conn:
        conn.execute(INSERT_DELIVERY, {"id": 3, "provider": "carrier-pigeon"})
    with pytest.raises(IntegrityError), blank_engine.begin() as conn:
        conn.execute(INSERT_EVENT, {"id": 3, "provider": "sendgrid", "event_id": "x"})

    command.downgrade(cfg, "0025")
    assert _webhook_rows(blank_engine) == [("stripe", "evt_1"), ("stripe",)]
    with pytest.raises(IntegrityError), blank_engine.begin() as conn:
        conn.execute(INSERT_DELIVERY, {"id": 2, "provider": "twilio"})
    command.upgrade(cfg, "head")
    assert _webhook_rows(blank_engine) == [("stripe", "evt_1"), ("stripe",)]
    assert db.current_revision(blank_engine) == db.head_revision()


def test_an_upgrade_that_copies_the_deliveries_table_on_sqlite_keeps_their_stored_events(
    blank_engine,
):
    """0009 rebuilds `webhook_deliveries` on SQLite (a new unique constraint): dropping the old
    table cascaded to every stored webhook event when foreign keys were enforced during the
    migration, so an install upgrading past 0009 lost the events it had not yet handled."""
    cfg = db.alembic_config(blank_engine)
    command.upgrade(cfg, "0008")
    with blank_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO webhook_deliveries (id, provider, received_at, headers, body, events)"
                " VALUES (1, 'stripe', '2026-11-24 15:00:00', '{}', '{}', 1)"
            )
        )
        conn.execute(INSERT_EVENT, {"id": 1, "provider": "stripe", "event_id": "evt_1"})
    command.upgrade(cfg, "head")
    assert _webhook_rows(blank_engine) == [("stripe", "evt_1"), ("stripe",)]


def test_0032_counts_the_open_invoices_already_there_by_day_and_goes_back(blank_engine):
    """Upgrading fills `open_invoice_days` from the invoices already stored, every open-balance
    case counted as `Invoice.is_open` counts it; going back leaves no table and no trigger."""
    cfg = db.alembic_config(blank_engine)
    command.upgrade(cfg, "0028")
    with blank_engine.begin() as conn:
        insert_company_and_customer(conn)
        for n, ((ledger, unposted, total), _) in enumerate(CASES):
            for status in ("open", "paid"):
                conn.execute(
                    text(
                        "INSERT INTO invoices (company_id, customer_id, issued_on, due_on,"
                        " currency, exchange_rate, total_minor, ledger_balance_minor,"
                        " unposted_minor, status, paused, payment_pending, source, source_id,"
                        " synced_at, highest_step_claimed)"
                        " VALUES (1, 1, '2026-10-01', :due, 'USD', '1', :total, :ledger,"
                        " :unposted, :status, false, false, 'demo', :sid,"
                        " '2026-11-24 15:00:00', -1)"
                    ),
                    {
                        "due": f"2026-11-{1 + n % 3:02d}",
                        "total": total,
                        "ledger": ledger,
                        "unposted": unposted,
                        "status": status,
                        "sid": f"I{n}{status}",
                    },
                )
    command.upgrade(cfg, "0032")
    with blank_engine.connect() as conn:
        kept = conn.execute(text("SELECT due_on, open_invoices FROM open_invoice_days")).all()
        counted = conn.execute(
            select(Invoice.due_on, func.count())
            .where(Invoice.company_id == 1, Invoice.is_open)
            .group_by(Invoice.due_on)
        ).all()
    assert {str(d): n for d, n in kept} == {str(d): n for d, n in counted}
    assert sum(n for _, n in kept) == sum(1 for _, owed in CASES if owed > 0)
    command.downgrade(cfg, "0028")
    with blank_engine.begin() as conn:  # no trigger left to write to a table that is gone
        conn.execute(text("UPDATE invoices SET status = 'open'"))
        conn.execute(text("DELETE FROM invoices"))
        assert "open_invoice_days" not in inspect(conn).get_table_names()
    command.upgrade(cfg, "head")
    assert db.current_revision(blank_engine) == db.head_revision()


def test_0036_left_sqlite_reading_the_dashboards_floor_through_the_new_index(blank_engine):
    """On a SQLite database whose invoices have planner statistics, an index without any is
    taken for a narrow one: the dashboard's `SUM` over a company's invoices went from the
    covering `ix_invoices_open_due` to every row through `ix_invoices_currency`. 0036 gives
    the new index its statistics where the invoices have some, and none where they have none
    (SQLite would then weigh it alone by its numbers)."""
    if ON_POSTGRES:
        pytest.skip("PostgreSQL's statistics are per column, not per index")
    cfg = db.alembic_config(blank_engine)
    command.upgrade(cfg, "0035")
    with blank_engine.begin() as conn:
        insert_company_and_customer(conn)
        conn.execute(
            insert(Invoice),
            [
                {
                    "company_id": 1,
                    "customer_id": 1,
                    "source": "demo",
                    "source_id": f"I{n}",
                    "issued_on": date(2026, 10, 1),
                    "due_on": date(2026, 10, 31),
                    "currency": "USD" if n % 2 else "EUR",
                    "exchange_rate": Decimal(1),
                    "total_minor": 100_00,
                    "ledger_balance_minor": 100_00,
                    "unposted_minor": 0,
                    "status": "open",
                    "paused": False,
                    "payment_pending": False,
                    "synced_at": datetime(2026, 11, 24, 15, tzinfo=UTC),
                }
                for n in range(40)
            ],
        )
        conn.exec_driver_sql("ANALYZE")
    command.upgrade(cfg, "0036")
    floor = "SELECT SUM(ledger_balance_minor) FROM invoices WHERE company_id = 1"
    with blank_engine.connect() as conn:
        stats = conn.exec_driver_sql(
            "SELECT stat FROM sqlite_stat1 WHERE idx = 'ix_invoices_currency'"
        ).all()
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {floor}"))
    assert stats, "the new index has no statistics beside the others'"
    assert "ix_invoices_currency" not in plan, plan
