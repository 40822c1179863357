"""A ledger's pages come through the registry too: a throwaway provider, defined in this file
(a blueprint and a settings partial), gets its routes and its part of the settings page
without an edit to the web app, the settings template or any other module."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint

from arbridge import providers
from arbridge.web import create_app
from tests.web.conftest import parse, sign_in

# The provider's web module is this one: the registry names it, the web app imports it.
bp = Blueprint("pocket_pages", __name__, template_folder="provider_pages")


@bp.get("/pocket/connect")
def connect() -> Any:
    return "pocket connect"


@pytest.fixture
def pocket():
    provider = providers.Provider(
        name="pocket",
        label="Pocket Ledger",
        connector=lambda _services, _conn: None,  # type: ignore[arg-type,return-value]
        mapper=lambda *_a: None,
        always_available=True,
        web_module=__name__,
        settings_template="providers/pocket_settings.html",
    )
    providers.register(provider)
    yield provider
    providers.unregister(provider.name)


def test_a_provider_s_pages_and_settings_part_come_from_the_registry(rt, demo_company, pocket):
    app = create_app(rt, TESTING=True)
    client = app.test_client()
    assert client.get("/pocket/connect").data == b"pocket connect"
    sign_in(client, rt, demo_company)
    page = parse(client.get(f"/c/{demo_company.slug}/settings").data)
    part = page.by_id("pocket-connect")
    assert part is not None and part.text == "Connect to Pocket Ledger"
    # The built-in ledgers are there as before: the demo company's ledger by its long label.
    assert "Demo ledger (simulated)" in page.by_id("connections").text


def test_without_the_provider_neither_its_pages_nor_its_part_exist(rt, demo_company):
    client = create_app(rt, TESTING=True).test_client()
    assert client.get("/pocket/connect").status_code == 404
    sign_in(client, rt, demo_company)
    page = parse(client.get(f"/c/{demo_company.slug}/settings").data)
    assert page.by_id("pocket-connect") is None
