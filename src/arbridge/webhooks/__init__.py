"""Webhooks: verify each delivery over its raw body, store it once, let the worker process it.

No Flask here: web/ hands in the raw bytes and headers.
"""
