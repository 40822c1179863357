"""The garbage collector's permanent generation, shared by the jobs of a process that hold
what is alive out of its sight while they run (the sync, the daily reminders run: issue 14).
Process-wide, so counted: the last holder to let go gives the collector everything back."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_HOLDERS = [0]
_LOCK = threading.Lock()
# Blocks under way that hold the collector off, and whether it was on before the first.
_PAUSED: dict[str, int | bool] = {"blocks": 0, "was_on": False}


def freeze(already_held: bool) -> None:
    """Move what is alive now into the permanent generation: no collection walks it until the
    last holder lets go. `already_held`: this holder froze before (it is counted once)."""
    with _LOCK:
        gc.freeze()
        if not already_held:
            _HOLDERS[0] += 1


def let_go() -> None:
    """A holder is done; the last one gives the collector the permanent generation back."""
    with _LOCK:
        _HOLDERS[0] -= 1
        if _HOLDERS[0] == 0:
            gc.unfreeze()


@contextmanager
def paused() -> Iterator[None]:
    """No collection at all while the block runs (refcounting still frees what dies): for a
    short block that makes millions of objects which stay alive, such as a connector's first
    reading of a ledger, followed by `freeze`. Otherwise a full collection set off by the
    block's own allocations walks all of them once, for nothing. Process-wide, so counted: the
    last block to end turns the collector back on, if it was on before the first."""
    with _LOCK:
        if _PAUSED["blocks"] == 0:
            _PAUSED["was_on"] = gc.isenabled()
            gc.disable()
        _PAUSED["blocks"] = int(_PAUSED["blocks"]) + 1
    try:
        yield
    finally:
        with _LOCK:
            _PAUSED["blocks"] = int(_PAUSED["blocks"]) - 1
            if _PAUSED["blocks"] == 0 and _PAUSED["was_on"]:
                gc.enable()
