"""Reminders: facts, the daily run, statements, holds, the re-check before sending, the dry
run and the case file. What to send is decided in `arbridge.collections.reminders`; it is sent
by `arbridge.services.messaging`."""
