"""What a running arbridge holds: settings, the database, the keyring and the clock, built once."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from arbridge.clock import DEMO_CLOCK_FILE, Clock, DemoClock, SystemClock
from arbridge.config import Settings, key_source
from arbridge.connectors.base import LedgerConnector
from arbridge.connectors.demo import DemoLedger
from arbridge.crypto import Keyring
from arbridge.providers import connector_for
from arbridge.providers.demo import demo_ledger, demo_ledger_path
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
        if clock is None:
            # The demo's clock can be moved forward (`arbridge clock advance`); a real one cannot.
            demo_file = settings.instance_path / DEMO_CLOCK_FILE
            clock = DemoClock(demo_file) if settings.demo else SystemClock()
        return cls(settings, engine, sessions, keyring, clock)

    def demo_ledger(self, tenant_id: str) -> DemoLedger:
        return demo_ledger(self.settings.instance_path, self.clock, tenant_id)

    def connector_for(self, conn: Connection) -> LedgerConnector:
        """The connector of the connection's provider, as the provider registry builds it."""
        return connector_for(self, conn)

    def close(self) -> None:
        self.engine.dispose()


__all__ = ["Runtime", "demo_ledger_path"]
