"""Connectors talk to the outside world (ledgers, Stripe, email) and nothing else does."""
