"""The issue's "done when": a company connected through the fake QuickBooks shows the ledger's
open balance and aging in `arbridge report` after a full sync, incremental changes and a webhook,
and a collected payment appears once in the ledger however often the write-back is retried."""

from __future__ import annotations

import gc
import json
import subprocess
import warnings
from datetime import timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from arbridge.cli import main
from arbridge.services.bootstrap import outbox_handlers
from arbridge.services.ledger.writebacks import post_ledger_payment as post_again
from arbridge.services.payments.refunds import refit_to_ledger
from arbridge.sync.db import transaction
from arbridge.sync.model import Connection, OutboxMessage
from arbridge.sync.outbox import deliver, enqueue
from arbridge.sync.outbox_kinds import OutboxKind, ledger_payment_payload
from arbridge.worker import claim_and_run, drain
from tests.cli.conftest import ARBRIDGE
from tests.conftest import env_for_subprocess
from tests.contract.quickbooks.conftest import TODAY, VERIFIER, seed_ledger
from tests.contract.quickbooks.fake import API, DISCOVERY
from tests.contract.quickbooks.test_sync import ledger_aging
from tests.contract.quickbooks.test_web import plain_company
from tests.contract.quickbooks.test_webhooks import classic, post, push_sync_job_back


def cli_env(settings):
    return env_for_subprocess(
        settings,
        ARBRIDGE_QBO_CLIENT_ID="ABfakeClientId",
        ARBRIDGE_QBO_CLIENT_SECRET="fake-client-secret",
        ARBRIDGE_QBO_WEBHOOK_VERIFIER=VERIFIER,
        ARBRIDGE_QBO_API_BASE=API,
        ARBRIDGE_QBO_DISCOVERY_URL=DISCOVERY,
    )


def report(settings, slug):
    out = subprocess.run(
        [ARBRIDGE, "report", "--company", slug, "--format", "json", "--as-of", TODAY.isoformat()],
        env=env_for_subprocess(settings),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def assert_report_matches(settings, slug, fake):
    ours, theirs = report(settings, slug), ledger_aging(fake)
    assert Decimal(ours["open_balance"]) == theirs.open_balance.amount
    assert ours["open_invoices"] == theirs.open_invoices
    assert {k: Decimal(v) for k, v in ours["aging"].items()} == {
        k: m.amount for k, m in theirs.buckets.items()
    }
    assert ours["aging_counts"] == theirs.counts


# The CLI's commands leave their runtime's engine for the garbage collector (cli.py keeps no
# handle to close); on PostgreSQL that is an open psycopg connection collected later.
LEAKY_CLI = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _collect_cli_leftovers():
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()  # here, so nothing surfaces in a later test


@LEAKY_CLI[0]
@LEAKY_CLI[1]
def test_connect_sync_change_webhook_and_pay_through_the_cli(rt, settings, client, fake):
    company = plain_company(rt, slug="harbor")
    ids = seed_ledger(fake)
    runner = CliRunner()
    _access, refresh = fake.issue_grant()
    connected = runner.invoke(
        main,
        ["connect", "quickbooks", "--company", "harbor", "--realm-id", fake.realm_id,
         "--refresh-token", refresh],
        env=cli_env(settings),
    )  # fmt: skip
    assert connected.exit_code == 0, connected.output
    assert refresh not in fake.refresh_tokens  # rotated at once; the new one is stored

    synced = runner.invoke(main, ["sync", "--company", "harbor"], env=cli_env(settings))
    assert synced.exit_code == 0, synced.output
    assert "invoices" in synced.output
    assert_report_matches(settings, "harbor", fake)

    # Incremental: a payment recorded in QuickBooks, a void, a deletion, a new invoice.
    fake.clock.advance(timedelta(minutes=20))
    fake.update_invoice(ids["invoices"][0], Balance=Decimal("0"))
    fake.void_invoice(ids["invoices"][3])
    fake.delete("Invoice", ids["invoices"][6])
    fake.add_invoice(ids["customers"][1], "321.00", issued=TODAY, due=TODAY - timedelta(days=1))
    synced = runner.invoke(main, ["sync", "--company", "harbor"], env=cli_env(settings))
    assert synced.exit_code == 0, synced.output
    assert "1 deleted" in synced.output
    assert_report_matches(settings, "harbor", fake)

    # A webhook: the worker re-fetches the invoice named.
    fake.clock.advance(timedelta(minutes=1))
    fake.update_invoice(ids["invoices"][7], Balance=Decimal("12.34"))
    push_sync_job_back(rt)
    assert post(client, classic(fake.realm_id, ("Invoice", ids["invoices"][7], "Update"))).json
    drain(rt)
    assert claim_and_run(rt, "sync")
    assert_report_matches(settings, "harbor", fake)

    # A payment collected through arbridge, written back; retried after delivery: still once.
    with rt.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.company_id == company.id))
    invoice = ids["invoices"][8]
    customer = fake.records["Invoice"][invoice]["CustomerRef"]["value"]
    with transaction(rt.sessions) as s:
        enqueue(
            s,
            rt.clock,
            company_id=company.id,
            kind=OutboxKind.LEDGER_PAYMENT,
            key="stripe:pi_e2e:ledger",
            payload=ledger_payment_payload(
                conn,
                customer_source_id=customer,
                currency="USD",
                amount=Decimal("25.00"),
                received_on=TODAY,
                reference="pi_e2e_3QhGfK2eZvKYlo2C",
                lines=[(invoice, Decimal("25.00"))],
            ),
        )
    deliver(rt.sessions, rt.clock, outbox_handlers(rt))
    with rt.sessions() as s:
        row = s.scalar(select(OutboxMessage).where(OutboxMessage.key == "stripe:pi_e2e:ledger"))
    for _ in range(3):
        assert post_again(rt, row, refit_to_ledger) == row.provider_ref
    assert len(fake.payments_with_reference("pi_e2e_3QhGfK2eZvKYlo2C")) == 1
    fake.clock.advance(timedelta(minutes=1))
    synced = runner.invoke(main, ["sync", "--company", "harbor"], env=cli_env(settings))
    assert synced.exit_code == 0, synced.output
    assert_report_matches(settings, "harbor", fake)


@LEAKY_CLI[0]
@LEAKY_CLI[1]
def test_connect_refuses_a_dead_refresh_token(rt, settings, fake):
    plain_company(rt, slug="harbor")
    result = CliRunner().invoke(
        main,
        ["connect", "quickbooks", "--company", "harbor", "--realm-id", fake.realm_id,
         "--refresh-token", "rt-never-issued"],
        env=cli_env(settings),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no longer valid" in result.output
    with rt.sessions() as s:
        assert s.scalar(select(Connection)) is None
