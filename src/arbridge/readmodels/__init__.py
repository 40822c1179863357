"""Read models: the queries behind the owner's pages, so views only parse input, call and render.

Each function takes a session (and the runtime or company it needs) and returns plain rows or
small dataclasses; none calls the network, and none loads rows one invoice or customer at a
time. Writes belong to the services, not here.
"""
