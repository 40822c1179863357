"""`arbridge demo --no-serve` on a fresh instance, then `report`, `sync` and their refusals.

One demo instance serves the whole module: setting it up is the slow part, and the tests here
only read it (the last one runs the demo again, which must change nothing that matters).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from arbridge.clock import SystemClock, local_date
from arbridge.crypto import new_key
from arbridge.sync.model import Company, Invoice, SignInToken
from arbridge.sync.store import hash_token
from tests.cli.conftest import ARBRIDGE, Instance, assert_one_sentence_error, fresh_instance

LINK = re.compile(r"^  http://127\.0\.0\.1:5000/sign-in/([A-Za-z0-9_-]{32,})$", re.MULTILINE)
AMOUNT = re.compile(r"^\d+\.\d{2}$")
BUCKETS = ("current", "1_30", "31_60", "61_90", "over_90")


class Demo:
    def __init__(self, instance: Instance, first_output: str) -> None:
        self.instance = instance
        self.first_output = first_output
        self._today: dict | None = None
        self.today_bounds: tuple[date, date] | None = None  # Chicago's date before and after

    @property
    def today(self) -> dict:
        """`report --format json` as of today, run once for the module."""
        if self._today is None:
            before = chicago_today()
            self._today = self.report()
            self.today_bounds = (before, chicago_today())
        return self._today

    def report(self, *args: str) -> dict:
        return json.loads(
            self.instance.ok("report", "--company", "demo", "--format", "json", *args)
        )


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    with fresh_instance(tmp_path_factory.mktemp("demo")) as instance:
        # The real console script: `arbridge demo`'s smoke test.
        yield Demo(instance, instance.in_subprocess.ok("demo", "--no-serve"))


def chicago_today() -> date:
    return local_date(SystemClock().now(), "America/Chicago")


def invoice_count(instance: Instance) -> int:
    with instance.runtime() as rt, rt.sessions() as s:
        return s.scalar(select(func.count()).select_from(Invoice)) or 0


def test_demo_initialises_syncs_and_prints_a_working_sign_in_link(demo: Demo):
    out = demo.first_output
    assert "Database ready" in out  # it ran init itself on the fresh instance
    assert "Demo company 'Acme Supply Co.' is ready." in out
    assert demo.instance.secret_mode() == 0o600
    tokens = LINK.findall(out)
    assert len(tokens) == 1, out
    with demo.instance.runtime() as rt, rt.sessions() as s:
        row = s.scalar(select(SignInToken).where(SignInToken.token_hash == hash_token(tokens[0])))
        assert row is not None
        assert row.used_at is None
        assert row.expires_at > SystemClock().now()
        assert s.scalar(select(func.count()).select_from(Invoice)) == 300


def test_report_json_has_the_documented_shape_and_adds_up(demo: Demo):
    data = demo.today
    assert demo.today_bounds is not None
    before, after = demo.today_bounds

    assert {
        "company",
        "as_of",
        "currency",
        "open_invoices",
        "open_balance",
        "overdue_balance",
        "aging",
    } <= set(data)
    assert data["company"] == "demo"
    assert data["currency"] == "USD"
    assert data["as_of"] in {before.isoformat(), after.isoformat()}  # today, in Chicago
    assert set(data["aging"]) == set(BUCKETS)

    amounts = [data["open_balance"], data["overdue_balance"], *data["aging"].values()]
    for amount in amounts:
        assert isinstance(amount, str)
        assert AMOUNT.match(amount), amount
    buckets = {k: Decimal(v) for k, v in data["aging"].items()}
    assert sum(buckets.values()) == Decimal(data["open_balance"])
    assert sum(v for k, v in buckets.items() if k != "current") == Decimal(data["overdue_balance"])
    assert all(v > 0 for v in buckets.values()), buckets  # the demo fills every bucket

    with demo.instance.runtime() as rt, rt.sessions() as s:
        open_count = s.scalar(
            select(func.count())
            .select_from(Invoice)
            .where(Invoice.status == "open", Invoice.open_balance_minor != 0)
        )
    assert data["open_invoices"] == open_count
    assert sum(data["aging_counts"].values()) == open_count


def test_as_of_moves_invoices_between_buckets(demo: Demo):
    today = demo.today
    far = demo.report("--as-of", "2100-01-01")
    assert far["as_of"] == "2100-01-01"
    assert far["open_balance"] == today["open_balance"]
    assert far["aging"]["over_90"] == far["open_balance"]
    assert far["overdue_balance"] == far["open_balance"]
    assert all(far["aging"][b] == "0.00" for b in BUCKETS[:-1])

    early = demo.report("--as-of", "2000-01-01")
    assert early["aging"]["current"] == early["open_balance"]
    assert early["overdue_balance"] == "0.00"
    assert early["aging"] != today["aging"] != far["aging"]


def test_report_table_is_readable(demo: Demo):
    data = demo.today
    out = demo.instance.ok("report", "--company", "demo", "--format", "table")
    lines = out.splitlines()
    assert lines[0] == (f"Acme Supply Co. (demo) receivables as of {data['as_of']}, in USD")
    assert lines[1] == "=" * len(lines[0])

    def usd(amount: str) -> str:  # $1,234.56: the symbol and thousands separators
        whole, cents = amount.split(".")
        return re.escape(f"${int(whole):,}.{cents}")

    assert Decimal(data["open_balance"]) >= 1000  # so the separator shows
    assert re.search(rf"^  Open invoices\s+{data['open_invoices']}$", out, re.MULTILINE)
    assert re.search(rf"^  Open balance\s+{usd(data['open_balance'])}$", out, re.MULTILINE)
    assert re.search(rf"^  Overdue invoices\s+{data['overdue_invoices']}$", out, re.MULTILINE)
    assert re.search(rf"^  Overdue balance\s+{usd(data['overdue_balance'])}$", out, re.MULTILINE)
    assert "," in usd(data["open_balance"])
    for label, key in [("Not yet due", "current"), ("Over 90 days", "over_90")]:
        count = data["aging_counts"][key]
        pattern = rf"^    {label}\s+{usd(data['aging'][key])}  \({count} invoices\)$"
        assert re.search(pattern, out, re.MULTILINE), out
    assert "{" not in out


def test_report_into_a_reader_that_has_gone_is_no_traceback(demo: Demo):
    """`arbridge report | head -1`: the pipe's reader has gone when the table is written (here
    before the first line, so the write surely fails)."""
    with subprocess.Popen(
        [ARBRIDGE, "report", "--company", "demo"],
        env=demo.instance.env,
        cwd=demo.instance.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        process.stdout.close()  # the only reading end: every write now fails with EPIPE
        _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr and "unexpected problem" not in stderr, stderr
    assert stderr == ""
    assert process.returncode == 1


@pytest.mark.subprocess
def test_an_invalid_as_of_date_is_a_usage_error(demo: Demo):
    result = demo.instance.run("report", "--company", "demo", "--as-of", "24/11/2026")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--as-of" in result.stderr


def test_sync_of_the_demo_company_is_up_to_date(demo: Demo):
    assert demo.instance.ok("sync", "--company", "demo").strip() == (
        "Synced demo: already up to date."
    )


def test_sync_off_a_terminal_prints_a_count_per_entity_not_bare_progress_labels(demo: Demo):
    result = demo.instance.run("sync", "--company", "demo", "--full")  # stderr is a pipe here

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "Synced demo: 40 customers, 300 invoices, 1 credit_notes, 177 payments"
    )
    assert result.stderr.splitlines() == [
        "customers          40 read from the ledger",
        "invoices          300 read from the ledger",
        "credit_notes        1 read from the ledger",
        "payments          177 read from the ledger",
    ]
    assert demo.instance.ok("sync", "--company", "demo").strip() == (
        "Synced demo: already up to date."
    )


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "args",
    [
        ("report", "--company", "nope"),
        ("sync", "--company", "nope"),
        ("companies", "sign-in-link", "nope"),
    ],
    ids=lambda args: args[0],
)
def test_an_unknown_company_slug_is_one_sentence(demo: Demo, args):
    assert_one_sentence_error(demo.instance.run(*args), "no company with the slug 'nope'")


def test_a_wrong_encryption_key_is_refused_and_destroys_nothing(demo: Demo):
    good = demo.today
    secrets_before = demo.instance.secret_file.read_bytes()
    wrong = new_key()

    # rotate-keys is the command that would write to the secret file and the database.
    for args in [("report", "--company", "demo"), ("rotate-keys",)]:
        result = demo.instance.run(*args, ARBRIDGE_ENCRYPTION_KEYS=wrong)
        assert_one_sentence_error(result, "encryption keys cannot read this database")

    assert demo.instance.secret_file.read_bytes() == secrets_before
    assert demo.report() == good  # with the right key, it works as before


def test_running_demo_again_reuses_the_company(demo: Demo):
    invoices = invoice_count(demo.instance)
    first_token = LINK.findall(demo.first_output)[0]

    out = demo.instance.ok("demo", "--no-serve")

    assert "Database ready" not in out  # not initialised twice
    tokens = LINK.findall(out)
    assert len(tokens) == 1
    assert tokens[0] != first_token  # a new one-time link
    with demo.instance.runtime() as rt, rt.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Company)) == 1
    assert invoice_count(demo.instance) == invoices == 300
