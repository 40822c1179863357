"""The use cases, one package per job (payments, reminders, messaging, ledger write-backs).

Each package registers the outbox kinds and webhook events it owns (its `registrations`
module); `services.bootstrap` builds the dispatch tables from those registrations.
"""
