"""Collections: pure decisions over the receivables model, an as-of date and a policy.

Nothing here reads the clock, the database or the network; callers pass everything in.
(Always imported as `arbridge.collections`; it never sits at the root of sys.path.)
"""
