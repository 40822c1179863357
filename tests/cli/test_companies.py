"""`arbridge companies create | list | sign-in-link`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from arbridge.sync.db import transaction
from arbridge.sync.model import Company, CompanyJob, Connection, SignInToken, User
from arbridge.sync.store import create_company, get_company, hash_token
from tests.cli.conftest import Instance, assert_one_sentence_error, fresh_instance

LINK = r"http://127\.0\.0\.1:5000/sign-in/([A-Za-z0-9_-]{32,})"


@pytest.fixture(scope="module")
def instance(tmp_path_factory) -> Iterator[Instance]:
    with fresh_instance(tmp_path_factory.mktemp("companies")) as instance:
        instance.ok("init")
        yield instance


def owner_tokens(instance: Instance, slug: str) -> list[SignInToken]:
    with instance.runtime() as rt, rt.sessions() as s:
        company = get_company(s, slug)
        return list(
            s.scalars(
                select(SignInToken)
                .join(User, User.id == SignInToken.user_id)
                .where(User.company_id == company.id)
                .order_by(SignInToken.id)
            )
        )


@pytest.mark.subprocess
def test_create_list_and_sign_in_link(instance: Instance):
    assert "No companies yet" in instance.ok("companies", "list")

    out = instance.ok(
        "companies",
        "create",
        "--name",
        "Harbor Bakery",
        "--slug",
        "harbor-bakery",
        "--currency",
        "cad",
        "--timezone",
        "America/Toronto",
        "--country",
        "ca",
        "--owner-email",
        "owner@harbor.example",
    )
    created = re.fullmatch(rf"Created harbor-bakery\. Owner sign-in link: {LINK}\n", out)
    assert created, out

    with instance.runtime() as rt, rt.sessions() as s:
        company = get_company(s, "harbor-bakery")
        assert (company.name, company.home_currency, company.timezone, company.country) == (
            "Harbor Bakery",
            "CAD",
            "America/Toronto",
            "CA",
        )
        owner = s.scalar(select(User).where(User.company_id == company.id))
        assert owner.email == "owner@harbor.example"
        jobs = set(s.scalars(select(CompanyJob.job).where(CompanyJob.company_id == company.id)))
        assert jobs == {"sync", "collections"}

    listed = instance.ok("companies", "list").splitlines()
    assert len(listed) == 2
    assert listed[0].split() == ["SLUG", "NAME", "CURRENCY", "TIMEZONE", "LEDGER"]
    assert listed[1].split() == [
        "harbor-bakery",
        "Harbor",
        "Bakery",
        "CAD",
        "America/Toronto",
        "no",
        "ledger",
    ]

    link = instance.ok("companies", "sign-in-link", "harbor-bakery")
    again = re.fullmatch(rf"{LINK}\n", link)
    assert again, link
    assert again.group(1) != created.group(1)
    tokens = owner_tokens(instance, "harbor-bakery")
    assert [t.token_hash for t in tokens] == [
        hash_token(created.group(1)),
        hash_token(again.group(1)),
    ]
    assert all(t.used_at is None for t in tokens)


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--slug", "Not A Slug", "is not a valid slug"),
        ("--timezone", "Mars/Olympus_Mons", "is not a known timezone"),
        ("--currency", "ZZZ", "is not a known currency code"),
        # Each of these was stored as given.
        ("--country", "ZZZ", "is not a country code"),
        ("--country", "XY", "is not a country code"),
        ("--owner-email", "notanemail", "is not an email address"),
        ("--name", "  ", "needs a name"),
    ],
)
def test_create_refuses_bad_values_in_one_sentence(instance: Instance, option, value, says):
    args = {"--name": "Bad Co", "--slug": "bad-co", "--owner-email": "o@bad.example"}
    args[option] = value
    flat = [part for pair in args.items() for part in pair]
    assert_one_sentence_error(instance.run("companies", "create", *flat), says)
    with instance.runtime() as rt, rt.sessions() as s:
        assert s.scalar(select(Company).where(Company.name == "Bad Co")) is None


def test_create_ignored_the_default_timezone_and_sync_interval_set_for_new_companies(
    instance: Instance,
):
    instance.ok(
        "companies",
        *("create", "--name", "Paris Co", "--slug", "paris", "--owner-email", "p@paris.example"),
        ARBRIDGE_DEFAULT_TIMEZONE="Europe/Paris",
        ARBRIDGE_SYNC_INTERVAL_MINUTES="60",
    )
    instance.ok(
        "companies",
        *("create", "--name", "Lyon Co", "--slug", "lyon", "--owner-email", "l@lyon.example"),
        *("--timezone", "America/Denver", "--country", "fr"),
        ARBRIDGE_DEFAULT_TIMEZONE="Europe/Paris",
    )
    with instance.runtime() as rt, rt.sessions() as s:
        paris, lyon = get_company(s, "paris"), get_company(s, "lyon")
        assert (paris.timezone, paris.sync_interval_minutes) == ("Europe/Paris", 60)
        assert (lyon.timezone, lyon.sync_interval_minutes, lyon.country) == (
            "America/Denver",
            15,
            "FR",
        )


def test_create_refuses_a_slug_that_exists(instance: Instance):
    args = ["--name", "Twice", "--slug", "twice", "--owner-email", "o@twice.example"]
    instance.ok("companies", "create", *args)
    result = instance.run("companies", "create", *args)
    assert_one_sentence_error(result, "a company with the slug 'twice' already exists")
    assert len(owner_tokens(instance, "twice")) == 1


def test_list_has_a_header_and_the_last_sync_in_each_company_s_timezone(tmp_path):
    with fresh_instance(tmp_path / "list") as instance:
        instance.ok("init")
        synced = datetime(2026, 1, 15, 23, 30, tzinfo=UTC)  # already the 16th in Dubai
        with instance.runtime() as rt, transaction(rt.sessions) as s:
            for slug, name, tz, last_sync in [
                ("chicago", "Lakeside Supply Company Incorporated", "America/Chicago", synced),
                ("dubai", "Dune Co", "Asia/Dubai", synced),
                ("fresh", "Fresh Ltd", "Europe/London", None),
            ]:
                company = create_company(
                    s,
                    rt.clock,
                    name=name,
                    slug=slug,
                    home_currency="USD",
                    timezone=tz,
                    country="US",
                    owner_email=f"owner@{slug}.example",
                )
                s.add(
                    Connection(
                        company_id=company.id,
                        provider="demo",
                        tenant_id=slug,
                        last_sync_at=last_sync,
                        created_at=synced,
                    )
                )

        lines = instance.ok("companies", "list").splitlines()

    assert lines == [
        "SLUG     NAME                                  CURRENCY  TIMEZONE         LEDGER",
        "chicago  Lakeside Supply Company Incorporated  USD       America/Chicago  "
        "demo (active, last synced Jan 15, 2026, 17:30 CST)",
        "dubai    Dune Co                               USD       Asia/Dubai       "
        "demo (active, last synced Jan 16, 2026, 03:30 UTC+04)",
        "fresh    Fresh Ltd                             USD       Europe/London    "
        "demo (active, never synced)",
    ]
