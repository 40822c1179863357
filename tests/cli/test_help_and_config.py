"""`arbridge --help`, bad configuration and an instance nobody has initialised."""

from __future__ import annotations

import re

import pytest

from arbridge.crypto import new_key
from tests.cli.conftest import Instance, assert_one_sentence_error
from tests.conftest import ON_POSTGRES

COMMANDS = {"init", "demo", "serve", "worker", "sync", "report", "companies", "rotate-keys"}


def listed_commands(help_text: str) -> dict[str, str]:
    """The `Commands:` section of a click help page, as {name: first words of its help}."""
    section = help_text.split("Commands:", 1)[1]
    return dict(re.findall(r"^  (\S+)\s+(\S.*)$", section, flags=re.MULTILINE))


@pytest.mark.subprocess
def test_help_lists_every_command_with_its_help(fresh: Instance):
    out = fresh.ok("--help")
    assert "Usage: arbridge" in out
    commands = listed_commands(out)
    assert set(commands) >= COMMANDS, commands
    for name in COMMANDS:
        assert len(commands[name]) > 10, (name, commands[name])  # a description, not a stub

    sub = listed_commands(fresh.ok("companies", "--help"))
    assert {"create", "list", "sign-in-link"} <= set(sub), sub
    assert all(len(words) > 10 for words in sub.values()), sub
    assert not fresh.path.exists()  # asking for help touches nothing


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "is not a valid database URL"),
        ("mysql://x", "names 'mysql'"),
        ("postgresql+psycopg://u@db.example:notaport/arbridge", "is not a valid database URL"),
        ("postgresql+psycopg2://u@127.0.0.1/arbridge", "driver 'psycopg2'"),
    ],
)
def test_a_malformed_database_url_is_one_sentence(fresh: Instance, url: str, says: str):
    result = fresh.run("init", ARBRIDGE_DATABASE_URL=url)
    assert_one_sentence_error(result, "ARBRIDGE_DATABASE_URL", says)
    assert not fresh.path.exists()  # refused before anything was created


def test_a_malformed_database_url_stops_other_commands_too(fresh: Instance):
    assert_one_sentence_error(
        fresh.run("report", "--company", "demo", ARBRIDGE_DATABASE_URL="mysql://x"),
        "ARBRIDGE_DATABASE_URL",
    )


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "args",
    [
        ("report", "--company", "demo"),
        ("worker", "--once"),
        ("rotate-keys",),
    ],
    ids=lambda args: "-".join(args[:2]),
)
def test_commands_on_an_uninitialised_instance_say_to_run_init(fresh: Instance, args):
    assert_one_sentence_error(fresh.run(*args), "run `arbridge init`")
    assert not fresh.path.exists()


def test_with_keys_in_the_environment_an_empty_database_still_says_to_run_init(fresh: Instance):
    keys = {"ARBRIDGE_SECRET_KEY": "s" * 48, "ARBRIDGE_ENCRYPTION_KEYS": new_key()}
    result = fresh.run("report", "--company", "demo", **keys)
    assert_one_sentence_error(result, "no arbridge tables yet", "run `arbridge init`")
    if not ON_POSTGRES:
        assert not (fresh.path / "arbridge.db").exists()  # the check created no empty database


@pytest.mark.subprocess
@pytest.mark.parametrize("args", [("worker", "--once"), ("companies", "list")], ids=" ".join)
def test_a_log_level_that_is_no_level_crashed_the_command_with_a_traceback(fresh: Instance, args):
    fresh.ok("init")
    result = fresh.run(*args, ARBRIDGE_LOG_LEVEL="bogus")
    assert_one_sentence_error(result, "ARBRIDGE_LOG_LEVEL", "DEBUG, INFO, WARNING")


@pytest.mark.subprocess
def test_a_one_shot_command_ignored_the_log_level_it_was_given(fresh: Instance):
    fresh.ok("init")
    fresh.ok("demo", "--no-serve")
    quiet = fresh.run("sync", "--company", "demo", "--full")
    assert quiet.returncode == 0 and "INFO" not in quiet.stderr  # only what it prints
    told = fresh.run("sync", "--company", "demo", "--full", ARBRIDGE_LOG_LEVEL="info")
    assert told.returncode == 0, told.stderr
    assert "INFO arbridge.sync.runner: synced demo connection" in told.stderr
