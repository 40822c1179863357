"""The issue's "done when" for Xero: an organisation connected through the fake Xero with
`arbridge connect xero` shows the ledger's open balance in `arbridge report` after full and
incremental syncs and after a webhook; a collected payment lands in Xero once however often
its write-back is retried."""

from __future__ import annotations

import gc
import json
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from arbridge.cli import main
from arbridge.sync.db import transaction
from arbridge.sync.model import Company, CompanyJob, Connection, WebhookEvent
from arbridge.sync.store import create_company
from tests.conftest import env_for_subprocess
from tests.contract.xero.conftest import TODAY, delivery, ledger_aging, post
from tests.contract.xero.fake import CLIENT_ID, CLIENT_SECRET

pytestmark = [
    # The CLI's commands leave their runtime's engine for the garbage collector.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(autouse=True)
def _collect_cli_leftovers():
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()


def cli_env(settings, config):
    return env_for_subprocess(
        settings,
        ARBRIDGE_XERO_CLIENT_ID=CLIENT_ID,
        ARBRIDGE_XERO_CLIENT_SECRET=CLIENT_SECRET,
        ARBRIDGE_XERO_WEBHOOK_KEY=config.webhook_key,
        ARBRIDGE_XERO_API_BASE=config.api_base,
        ARBRIDGE_XERO_IDENTITY_BASE=config.identity_base,
    )


def company(rt, slug: str) -> Company:
    with transaction(rt.sessions) as s:
        row = create_company(
            s,
            rt.clock,
            name=f"Company {slug}",
            slug=slug,
            home_currency="NZD",
            timezone="UTC",
            country="NZ",
            owner_email=f"owner@{slug}.example",
        )
        s.expunge(row)
    return row


def ledger(fake) -> list[str]:
    """NZD invoices only, so the report's home-currency total is the ledger's own sum."""
    contacts = [fake.add_contact("Harbor Cafe"), fake.add_contact("Maple Dental")]
    return [
        fake.add_invoice(
            contacts[i % 2],
            f"{120 + 45 * i}.50",
            issued=TODAY - timedelta(days=5 + 20 * i),
            due=TODAY + timedelta(days=25 - 20 * i),
        )
        for i in range(6)
    ]


def run(settings, config, *args: str):
    return CliRunner().invoke(main, list(args), env=cli_env(settings, config))


def connect(settings, config, slug, tenant_id, refresh):
    return run(
        settings, config,
        "connect", "xero", "--company", slug, "--tenant-id", tenant_id, "--refresh-token", refresh,
    )  # fmt: skip


def assert_report_matches(settings, config, slug, fake):
    """`arbridge report` shows what the fake ledger owes: open balance, invoices, and aging."""
    out = run(
        settings, config,
        "report", "--company", slug, "--format", "json", "--as-of", TODAY.isoformat(),
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    ours, theirs = json.loads(out.stdout), ledger_aging(fake)
    assert theirs.open_balance.amount == fake.open_balance().get("NZD", Decimal(0))
    assert Decimal(ours["open_balance"]) == theirs.open_balance.amount
    assert ours["open_invoices"] == theirs.open_invoices
    assert Decimal(ours["overdue_balance"]) == theirs.overdue_balance.amount
    assert {k: Decimal(v) for k, v in ours["aging"].items()} == {
        k: m.amount for k, m in theirs.buckets.items()
    }
    assert ours["aging_counts"] == theirs.counts


def test_connect_then_full_and_incremental_syncs_match_the_ledger(rt, settings, config, fake):
    company(rt, "harbor-nz")
    ids = ledger(fake)
    _access, refresh = fake.issue_grant()
    connected = connect(settings, config, "harbor-nz", fake.tenant_id, refresh)
    assert connected.exit_code == 0, connected.output
    assert "Harbor Bakery Ltd" in connected.output
    assert "No Xero account is chosen for collected payments yet" in connected.output
    assert refresh not in fake.refresh_tokens  # rotated at once; the new one is stored
    # The grant proved it reads the tenant before it was attached.
    paths = [r["path"].lower() for r in fake.requests]
    assert paths[:3] == ["/connect/token", "/connections", "/api.xro/2.0/organisation"]

    synced = run(settings, config, "sync", "--company", "harbor-nz")
    assert synced.exit_code == 0, synced.output
    assert_report_matches(settings, config, "harbor-nz", fake)

    fake.now += timedelta(minutes=20)
    fake.update_invoice(ids[0], AmountDue=Decimal("20.00"), AmountPaid=Decimal("100.50"))
    fake.update_invoice(ids[1], Status="VOIDED")
    synced = run(settings, config, "sync", "--company", "harbor-nz")
    assert synced.exit_code == 0, synced.output
    assert_report_matches(settings, config, "harbor-nz", fake)


def test_after_a_signed_webhook_and_the_worker_the_report_matches_the_ledger(
    rt, settings, config, client, fake
):
    """Full sync, then changes in Xero that only a webhook announces: Xero posts the signed
    delivery to POST /webhooks/xero, `arbridge worker --once` reads the named invoices again
    (and nothing else: no sync is due), and `arbridge report` ages the books as Xero does."""
    company(rt, "harbor-nz")
    ids = ledger(fake)
    assert (
        connect(settings, config, "harbor-nz", fake.tenant_id, fake.issue_grant()[1]).exit_code == 0
    )
    assert run(settings, config, "sync", "--company", "harbor-nz").exit_code == 0
    assert_report_matches(settings, config, "harbor-nz", fake)

    fake.now += timedelta(minutes=20)
    # Part paid (stays in its bucket), paid in full (leaves the report), voided.
    fake.update_invoice(ids[3], AmountDue=Decimal("60.00"), AmountPaid=Decimal("195.50"))
    fake.update_invoice(ids[4], AmountDue=Decimal("0.00"), AmountPaid=Decimal("300.50"))
    fake.update_invoice(ids[4], Status="PAID")
    fake.update_invoice(ids[5], Status="VOIDED")
    # The worker's CLI runs on the wall clock: no sync may be due, so only the webhook can
    # bring these changes in.
    with transaction(rt.sessions) as s:
        s.execute(update(CompanyJob).values(next_run_at=datetime(2100, 1, 1, tzinfo=UTC)))
    calls = len(fake.requests)
    body = delivery(*((fake.tenant_id, "INVOICE", ids[i]) for i in (3, 4, 5)))
    answer = post(client, body)
    assert (answer.status_code, answer.data) == (200, b"")
    assert post(client, body).status_code == 200  # Xero delivers again
    assert len(fake.requests) == calls  # the route only stores
    with pytest.raises(AssertionError):
        assert_report_matches(settings, config, "harbor-nz", fake)  # not read yet

    worked = run(settings, config, "worker", "--once")
    assert worked.exit_code == 0, worked.output
    reads = [r for r in fake.requests[calls:] if r["path"].startswith("/api.xro/")]
    assert [r["path"] for r in reads] == ["/api.xro/2.0/Invoices"]
    assert sorted(parse_qs(reads[0]["query"])["IDs"][0].split(",")) == sorted(
        ids[i] for i in (3, 4, 5)
    )
    assert_report_matches(settings, config, "harbor-nz", fake)
    with rt.sessions() as s:
        assert set(s.scalars(select(WebhookEvent.status))) == {"processed"}


def test_a_tenant_attached_to_another_company_is_refused_before_the_token_is_spent(
    rt, settings, config, fake
):
    company(rt, "first")
    company(rt, "second")
    assert connect(settings, config, "first", fake.tenant_id, fake.issue_grant()[1]).exit_code == 0
    spent = fake.calls["token"]
    _access, refresh = fake.issue_grant()
    refused = connect(settings, config, "second", fake.tenant_id, refresh)
    assert refused.exit_code == 1
    assert refused.stderr.strip().count("\n") == 0
    assert "already connected to another company" in refused.stderr
    assert fake.calls["token"] == spent and refresh in fake.refresh_tokens
    with rt.sessions() as s:
        assert len(s.scalars(select(Connection)).all()) == 1


def test_a_grant_that_does_not_cover_the_tenant_is_not_attached(rt, settings, config, fake):
    company(rt, "harbor-nz")
    other = "6f7a0c55-8a43-4f6c-9d51-1b1f3d1f0a77"
    refused = connect(settings, config, "harbor-nz", other, fake.issue_grant()[1])
    assert refused.exit_code == 1
    assert f"does not cover organisation {other}" in refused.stderr
    assert "Harbor Bakery Ltd" in refused.stderr  # what it does cover
    with rt.sessions() as s:
        assert s.scalar(select(Connection)) is None


def test_a_dead_refresh_token_or_a_bad_tenant_id_is_refused(rt, settings, config, fake):
    company(rt, "harbor-nz")
    dead = connect(settings, config, "harbor-nz", fake.tenant_id, "rt-never-issued")
    assert dead.exit_code == 1 and "no longer valid" in dead.stderr
    bad = connect(settings, config, "harbor-nz", "not-a-guid", "x")
    assert bad.exit_code == 1 and "is not a Xero tenant id" in bad.stderr
    account = run(
        settings, config,
        "connect", "xero", "--company", "harbor-nz", "--tenant-id", fake.tenant_id,
        "--refresh-token", "x", "--payment-account-id", "090",
    )  # fmt: skip
    assert account.exit_code == 1 and "is not a Xero AccountID" in account.stderr
    assert fake.calls["token"] == 1  # the bad id was refused before any call
    with rt.sessions() as s:
        assert s.scalar(select(Connection)) is None
