"""What a running arbridge holds: settings, the database, the keyring and the clock, built once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import Clock, SystemClock
from arbridge.config import Settings, key_source
from arbridge.connectors.base import LedgerConnector
from arbridge.connectors.demo import DemoConnector, DemoLedger
from arbridge.crypto import Keyring
from arbridge.errors import ArbridgeError
from arbridge.sync import db
from arbridge.sync.db import transaction
from arbridge.sync.model import Connection
from arbridge.sync.store import check_keys


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keyring: Keyring
    clock: Clock = field(default_factory=SystemClock)

    @classmethod
    def open(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        """Connect to an initialised instance; refuse with one clear sentence if anything is off."""
        settings.require_secrets()
        keyring = Keyring(settings.encryption_keys, source=key_source(settings))
        engine = db.make_engine(settings.database_url)
        db.require_current(engine)
        sessions = db.session_factory(engine)
        with transaction(sessions) as session:
            check_keys(session, keyring)
        return cls(settings, engine, sessions, keyring, clock or SystemClock())

    def demo_ledger(self, tenant_id: str) -> DemoLedger:
        return DemoLedger(demo_ledger_path(self.settings.instance_path, tenant_id), self.clock)

    def connector_for(self, conn: Connection) -> LedgerConnector:
        if conn.provider == "demo":
            return DemoConnector(self.demo_ledger(conn.tenant_id))
        if conn.provider == "quickbooks":
            from arbridge.sync.quickbooks_store import build_connector

            return build_connector(self.settings, self.sessions, self.keyring, self.clock, conn)
        raise ArbridgeError(f"the {conn.provider} connector is not available in this version")

    def close(self) -> None:
        self.engine.dispose()


def demo_ledger_path(instance_path: Path, tenant_id: str) -> Path:
    return instance_path / "demo-ledgers" / f"{tenant_id}.json"
