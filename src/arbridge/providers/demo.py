"""The demo ledger as a provider: a JSON file per tenant in the instance folder, no OAuth."""

from __future__ import annotations

from pathlib import Path

from arbridge.clock import Clock
from arbridge.connectors.base import LedgerConnector
from arbridge.connectors.demo import DemoConnector, DemoLedger
from arbridge.providers.base import Provider, Services
from arbridge.sync.mappers import demo as demo_mapper
from arbridge.sync.model import Connection


def demo_ledger_path(instance_path: Path, tenant_id: str) -> Path:
    return instance_path / "demo-ledgers" / f"{tenant_id}.json"


def demo_ledger(instance_path: Path, clock: Clock, tenant_id: str) -> DemoLedger:
    return DemoLedger(demo_ledger_path(instance_path, tenant_id), clock)


def connector(services: Services, conn: Connection) -> LedgerConnector:
    return DemoConnector(
        demo_ledger(services.settings.instance_path, services.clock, conn.tenant_id)
    )


PROVIDER = Provider(
    name="demo",
    label="the demo ledger",
    connector=connector,
    mapper=demo_mapper.map_record,
    always_available=True,
    long_label="Demo ledger (simulated)",
)
