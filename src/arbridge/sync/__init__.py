"""The receivables model, the database, and the sync that fills it from each ledger."""
