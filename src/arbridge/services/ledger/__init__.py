"""Ledger write-backs: what arbridge collected, written into the company's ledger."""
