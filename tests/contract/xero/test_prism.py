"""A second check against Xero's own spec: Prism serves tests/fixtures/xero/openapi/xero_accounting.yaml
(its examples as responses) and, with --errors, refuses any request the spec does not allow. The
connector's reads and writes must pass Prism's validation, and the mapper must parse every page
of examples it sends back. Xero's own SDK tests run against exactly this.

Prism is fetched with npx the first time (about 30 s) and its spec load takes up to a minute, so
one server serves the whole module. Without npx the test is skipped, unless
ARBRIDGE_REQUIRE_PRISM=1 (a CI that promises to run it), where a missing npx fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from arbridge.connectors.base import PaymentLine, PaymentWriteBack
from arbridge.connectors.xero import TenantLimiter, XeroConfig, XeroConnector
from arbridge.errors import Rejected
from arbridge.sync.mappers.xero import map_record
from arbridge.sync.records import CreditNoteData, CustomerData, Deleted, InvoiceData, PaymentData
from tests.contract.xero.conftest import TODAY

pytestmark = pytest.mark.prism

SPEC = Path(__file__).parents[2] / "fixtures" / "xero" / "openapi" / "xero_accounting.yaml"
PRISM = "@stoplight/prism-cli@5"
STARTUP_SECONDS = 240
TENANT = "aef86862-2015-4b6b-88bc-d89032cecc50"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def prism(tmp_path_factory) -> Iterator[str]:
    npx = shutil.which("npx")
    if npx is None:
        message = (
            "npx (Node.js and npm) is not installed: the Prism check of the Xero spec needs it"
        )
        if os.environ.get("ARBRIDGE_REQUIRE_PRISM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    log = tmp_path_factory.mktemp("prism") / "prism.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                npx,
                "--yes",
                PRISM,
                "mock",
                str(SPEC),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--errors",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "npm_config_yes": "true", "NO_COLOR": "1"},
            # npx runs Prism as a child of its own: the whole group is stopped at the end (a
            # SIGTERM to npx alone left Prism's node process serving after the run).
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _listening(port):
            if proc.poll() is not None:
                pytest.fail(f"Prism exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"Prism did not start in {STARTUP_SECONDS} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        # npx is gone; its children may not have been: wait for the group to empty.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


class StaticTokens:
    def access_token(self) -> str:
        return "prism-access-token"

    def refresh(self, stale: str) -> str:  # pragma: no cover - Prism never answers 401 here
        return stale

    def give_up(self, reason: str) -> None:  # pragma: no cover
        raise AssertionError(reason)


@pytest.fixture
def xero(prism, clock) -> XeroConnector:
    config = XeroConfig("prism-client", "prism-secret", api_base=prism, accounting_path="")
    return XeroConnector(
        config,
        TENANT,
        StaticTokens(),
        clock,
        payment_account={"Code": "090"},
        sleep=lambda _s: None,
        limiter=TenantLimiter(per_minute=100_000),
    )


def mapped(xero, entity, cursor=None):
    pages = list(xero.pull(entity, cursor))
    return [map_record(entity, r.source_id, r.deleted, r.raw) for p in pages for r in p.records]


def test_reads_and_writes_fit_xeros_spec_and_its_examples_map(xero):
    # Full reads: one example page per endpoint, short, so one request each.
    invoices = mapped(xero, "invoices")
    assert [type(i) for i in invoices] == [InvoiceData] * 3
    assert {i.status for i in invoices} == {"voided", "paid", "open"}
    open_ = next(i for i in invoices if i.status == "open")
    assert open_.balance.amount == Decimal(115) and open_.currency == "NZD"

    contacts = mapped(xero, "customers")
    assert contacts and all(isinstance(c, CustomerData) for c in contacts)

    payments = mapped(xero, "payments")
    assert any(isinstance(p, PaymentData) for p in payments)

    credits = mapped(xero, "credit_notes")
    assert any(isinstance(c, CreditNoteData) for c in credits)
    assert any(isinstance(c, Deleted) for c in credits)  # the supplier credits and SPEND- ones

    # Incremental reads send If-Modified-Since as the spec types it (a date-time).
    assert mapped(xero, "invoices", '{"Invoices": "2026-11-20T09:09:33+00:00"}')

    # Reads by id, the organisation.
    assert xero.read_invoices(["7ef31b20-de17-4312-8382-412f869b1510"])
    assert xero.organisation()["name"]

    # PUT /Payments: the request passes the spec; the spec's example answer is a payment with a
    # validation error ("exceeds the amount outstanding"), which must come back as a refusal.
    with pytest.raises(Rejected, match="exceeds the amount outstanding"):
        xero.post_payment(
            PaymentWriteBack(
                idempotency_key="ledger_payment:pi_prism",
                customer_source_id="",
                currency="NZD",
                amount=Decimal("12.30"),
                received_on=TODAY,
                reference="pi_prism",
                lines=[PaymentLine("7ef31b20-de17-4312-8382-412f869b1510", Decimal("12.30"))],
            )
        )

    # Deleting a payment: GET /Payments/{id}, then POST {"Status": "DELETED"}.
    xero.reverse_payment("99ea7f6b-c513-4066-bc27-b7c65dcd76c2", "ledger_reversal:pi_prism:1")
