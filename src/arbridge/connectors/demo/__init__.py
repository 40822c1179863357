"""The demo ledger: a simulated accounting system behind the same connector interface."""

from arbridge.connectors.demo.ledger import DemoConnector, DemoLedger, generate_demo_ledger

__all__ = ["DemoConnector", "DemoLedger", "generate_demo_ledger"]
