"""The garbage collector's permanent generation, shared by the jobs of a process that hold
what is alive out of its sight while they run (the sync, the daily reminders run: issue 14).
Process-wide, so counted: the last holder to let go gives the collector everything back."""

from __future__ import annotations

import gc
import threading

_HOLDERS = [0]
_LOCK = threading.Lock()


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
