"""A damaged demo ledger file: the sync fails with one sentence (recorded for the owner) or skips
the records it cannot read, and nothing already synced is lost or changed."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from arbridge.errors import ArbridgeError
from arbridge.sync.db import transaction
from arbridge.sync.model import Activity, CompanyJob, Connection, Invoice, SyncCursor, SyncError
from arbridge.worker import claim_and_run
from tests.conftest import sync_now


def _connection(rt, company) -> Connection:
    with rt.sessions() as s:
        conn = s.scalar(select(Connection).where(Connection.company_id == company.id))
        s.expunge(conn)
        return conn


def _snapshot(rt, company) -> tuple[Any, ...]:
    with rt.sessions() as s:
        invoices = s.execute(
            select(Invoice.source_id, Invoice.open_balance_minor, Invoice.status, Invoice.due_on)
            .where(Invoice.company_id == company.id)
            .order_by(Invoice.source_id)
        ).all()
        cursors = s.execute(select(SyncCursor.entity, SyncCursor.value).order_by("entity")).all()
        return tuple(invoices), tuple(cursors)


def _rewrite(path, change: Callable[[dict[str, Any]], Any]) -> None:
    state = json.loads(path.read_text())
    state["seq"] += 1
    change(state)
    path.write_text(json.dumps(state))


def _new_invoice_without(field: str) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        record = {**state["Invoice"][0], "seq": state["seq"], "id": "INV-NEW"}
        del record[field]
        state["Invoice"].append(record)

    return change


CORRUPTIONS: dict[str, Callable[[Any], None]] = {
    "truncated": lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]),
    "not_text": lambda p: p.write_bytes(b"\x00\xff\xfe binary"),
    "empty": lambda p: p.write_text(""),
    "a_list": lambda p: p.write_text("[]"),
    "invoices_not_a_list": lambda p: _rewrite(p, lambda s: s.update(Invoice="oops")),
    "invoices_missing": lambda p: _rewrite(p, lambda s: s.pop("Invoice")),
    "record_not_an_object": lambda p: _rewrite(p, lambda s: s["Invoice"].append("garbage")),
    "seq_not_a_number": lambda p: _rewrite(p, lambda s: s["Invoice"][0].update(seq="x")),
    "seq_missing": lambda p: _rewrite(p, lambda s: s["Invoice"][0].pop("seq")),
    "id_missing": lambda p: _rewrite(p, _new_invoice_without("id")),
}


@pytest.mark.parametrize("damage", CORRUPTIONS, ids=str)
def test_a_corrupted_demo_ledger_fails_the_sync_with_one_sentence_and_loses_nothing(
    rt, clock, demo_company, damage
):
    conn = _connection(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    good = ledger.path.read_bytes()
    before = _snapshot(rt, demo_company)
    CORRUPTIONS[damage](ledger.path)
    clock.advance(timedelta(minutes=20))

    with pytest.raises(ArbridgeError) as failed:
        sync_now(rt, conn)

    message = str(failed.value)
    assert "\n" not in message and "demo ledger" in message, message
    assert _snapshot(rt, demo_company) == before
    with rt.sessions() as s:
        row = s.get(Connection, conn.id)
        assert row.last_sync_error == message
        assert s.scalar(
            select(Activity.message).where(Activity.kind == "sync.failed").order_by(Activity.id)
        ) == (f"Sync failed: {message}")

    # Put the file back: the next sync works, and the error clears.
    ledger.path.write_bytes(good)
    sync_now(rt, conn)
    with rt.sessions() as s:
        assert s.get(Connection, conn.id).last_sync_error is None
    assert _snapshot(rt, demo_company) == before


def test_the_worker_records_a_corrupted_ledger_without_a_traceback(rt, clock, demo_company, caplog):
    conn = _connection(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    before = _snapshot(rt, demo_company)
    CORRUPTIONS["truncated"](ledger.path)
    with transaction(rt.sessions) as s:
        job = s.scalar(
            select(CompanyJob).where(
                CompanyJob.company_id == demo_company.id, CompanyJob.job == "sync"
            )
        )
        job.next_run_at = clock.now() - timedelta(minutes=1)

    with caplog.at_level(logging.INFO):
        assert claim_and_run(rt, "sync", "worker-a")

    assert not [r for r in caplog.records if r.exc_info], "a traceback reached the log"
    with rt.sessions() as s:
        job = s.scalar(
            select(CompanyJob).where(
                CompanyJob.company_id == demo_company.id, CompanyJob.job == "sync"
            )
        )
        assert job.last_error is not None and "is not valid JSON" in job.last_error
        assert "is not valid JSON" in (s.get(Connection, conn.id).last_sync_error or "")
    assert _snapshot(rt, demo_company) == before


def test_records_with_wrong_types_are_skipped_as_sync_errors_and_the_rest_syncs(
    rt, clock, demo_company
):
    conn = _connection(rt, demo_company)
    ledger = rt.demo_ledger(conn.tenant_id)
    with rt.sessions() as s:
        open_ids = s.scalars(
            select(Invoice.source_id)
            .where(Invoice.company_id == demo_company.id, Invoice.status == "open")
            .order_by(Invoice.source_id)
        ).all()
    damaged = {
        open_ids[0]: {"total": "1e999999", "balance": "1e999999"},
        open_ids[1]: {"total": "9" * 400, "balance": "9" * 400},
        open_ids[2]: {"balance": "sNaN"},
        open_ids[3]: {"dueDate": "0001-01-01"},
        open_ids[4]: {"date": "9999-12-31"},
        open_ids[5]: {"invoiceNumber": {"not": "a number"}},
        open_ids[6]: {"lineItems": "oops"},
        open_ids[7]: {"currencyRate": "1e999999"},
        open_ids[8]: {"total": ["12.00"]},
        open_ids[9]: {"terms": ["net", 30]},
    }
    voided = open_ids[10]
    before = _snapshot(rt, demo_company)
    with ledger.change() as state:
        for inv in state["Invoice"]:
            if inv["id"] in damaged:
                inv.update(damaged[inv["id"]])
                ledger.touch(state, inv)
            if inv["id"] == voided:
                inv.update(status="VOIDED", balance="0.00", total="0.00")
                ledger.touch(state, inv)
        customer = state["Customer"][0]
        customer["contactPerson"] = "not an object"
        ledger.touch(state, customer)

    clock.advance(timedelta(minutes=20))
    result = sync_now(rt, conn)

    assert result.errors == len(damaged) + 1
    with rt.sessions() as s:
        errors = s.scalars(select(SyncError).where(SyncError.company_id == demo_company.id)).all()
        assert {e.source_id for e in errors} == {*damaged, customer["id"]}
        assert all(e.message and "\n" not in e.message for e in errors)
        assert s.scalar(select(Invoice.status).where(Invoice.source_id == voided)) == "voided"
        assert s.get(Connection, conn.id).last_sync_error is None
    # The damaged invoices keep what was synced before.
    kept = {row[0]: row for row in before[0]}
    after = {row[0]: row for row in _snapshot(rt, demo_company)[0]}
    for source_id in damaged:
        assert after[source_id] == kept[source_id], source_id
