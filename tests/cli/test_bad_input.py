"""The command line refuses bad input in a sentence: dates outside the calendar arbridge works in,
digits of other scripts, and a damaged demo ledger during `arbridge sync`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from arbridge.demo import DEMO_TENANT
from arbridge.runtime import demo_ledger_path
from tests.cli.conftest import Instance, assert_one_sentence_error, fresh_instance


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Instance]:
    with fresh_instance(tmp_path_factory.mktemp("demo")) as instance:
        instance.ok("demo", "--no-serve")
        yield instance


COMMANDS = [("report", "--company", "demo"), ("remind", "--company", "demo", "--dry-run")]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_an_as_of_date_outside_1900_to_2999_is_a_usage_error_not_a_traceback(demo, command):
    for day, says in [
        ("9999-12-31", "between 1900-01-01 and 2999-12-31"),
        ("0001-01-01", "between 1900-01-01 and 2999-12-31"),
        ("２０２６-11-24", "YYYY-MM-DD"),
        ("2026-02-30", "not a date on the calendar"),
    ]:
        result = demo.run(*command, "--as-of", day)
        assert result.returncode == 2, (day, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stdout == ""
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: Invalid value for '--as-of'"), result.stderr
        assert says in last, result.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_the_first_and_last_days_arbridge_accepts_work(demo, command):
    for day in ("1900-01-01", "2999-12-31"):
        assert demo.ok(*command, "--as-of", day)


def test_sync_of_a_damaged_demo_ledger_is_one_sentence_and_loses_nothing(demo):
    path = demo_ledger_path(demo.path, DEMO_TENANT)
    good = path.read_bytes()
    before = demo.ok("report", "--company", "demo", "--format", "json")
    path.write_bytes(good[: len(good) // 2])
    try:
        result = demo.run("sync", "--company", "demo")
        assert_one_sentence_error(result, "demo ledger", "is not valid JSON", "--reset")
        assert demo.ok("report", "--company", "demo", "--format", "json") == before
    finally:
        path.write_bytes(good)
    assert demo.ok("sync", "--company", "demo").strip() == "Synced demo: already up to date."


@pytest.mark.subprocess
def test_a_realm_id_in_other_digits_is_refused_in_one_sentence(demo):
    for realm in ("١٢٣٤", "１２３４", "²"):
        result = demo.run(
            "connect",
            "quickbooks",
            "--company",
            "demo",
            "--realm-id",
            realm,
            "--refresh-token",
            "x",
        )
        assert_one_sentence_error(result, "is not a QuickBooks realm id")


@pytest.mark.subprocess
def test_serving_on_a_port_already_in_use_is_one_sentence_not_a_traceback(demo):
    """A second `arbridge demo` (or serve) while the first still runs printed waitress's
    traceback for EADDRINUSE."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = demo.run("serve", "--port", port)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and f"127.0.0.1:{port} is already in use" in last, last


def test_a_number_beyond_64_bits_did_not_say_which_numbers_are_accepted(demo):
    result = demo.run("report", "--company", "demo", "--period-days", "9" * 25)
    assert result.returncode == 2, result.stderr
    assert "Enter a whole number between 1 and 3660" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "99999"], "99999 is not in the range 1<=x<=65535"),
        (["--port", "0"], "0 is not in the range 1<=x<=65535"),
        (["--host", "not a host"], "'not a host' is not a host name or an IP address"),
    ],
)
def test_an_impossible_demo_address_was_kept_for_every_later_link(demo, args, says):
    """`demo --port 99999` (or a host with a space) printed links no browser opens, and kept the
    address for the links every later command and the worker send."""
    before = demo.ok("companies", "sign-in-link", "demo")
    result = demo.run("demo", "--no-serve", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert says in result.stderr.strip().splitlines()[-1]
    after = demo.ok("companies", "sign-in-link", "demo")
    assert after.split("/sign-in/")[0] == before.split("/sign-in/")[0]
