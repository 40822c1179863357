"""Deterministic races: run a callback just before or just after a named function of ours.

Two steps that race in production (a second press arriving while the first is between its read
and its write) are replayed in one thread, in the order that hurts, every time, instead of
hoping a thread barrier lines them up. The named function is wrapped in place for the length of
the `with` block and still runs; the callback runs once, at the first call, so a callback that
goes through the same function again does not set itself off. After the block the hook must
have fired: a race test whose step never ran tests nothing.

    with run_before("arbridge.connectors.stripe.simulated.SimulatedStripe.create_checkout_session",
                    lambda *args, **kwargs: second_press()):
        first_press()

Saleor's tests/race_condition.py does the same for its checkout; the target is a dotted path to
a module attribute or to a method on a class (`package.module.Class.method`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["run_after", "run_before"]


def _owner_of(target: str) -> tuple[Any, str]:
    """(the module or class holding the attribute, the attribute's name)."""
    parts = target.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:-1]:
            owner = getattr(owner, name)
        if not hasattr(owner, parts[-1]):
            raise AttributeError(f"{target}: {owner!r} has no {parts[-1]!r}")
        return owner, parts[-1]
    raise ModuleNotFoundError(f"{target}: no module to import")


@contextmanager
def _hooked(target: str, callback: Callable[..., Any], *, after: bool) -> Iterator[None]:
    owner, name = _owner_of(target)
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    function = original.__func__ if isinstance(original, (staticmethod, classmethod)) else original
    fired = False

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal fired
        first = not fired
        fired = True
        if first and not after:
            callback(*args, **kwargs)
        result = function(*args, **kwargs)
        if first and after:
            callback(*args, **kwargs)
        return result

    if isinstance(original, staticmethod):
        setattr(owner, name, staticmethod(wrapper))
    elif isinstance(original, classmethod):
        setattr(owner, name, classmethod(wrapper))
    else:
        setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)
    assert fired, f"{target} was never called: the race did not happen"


def run_before(target: str, callback: Callable[..., Any]) -> Any:
    """Within the block, the first call of `target` runs `callback(*args, **kwargs)` first."""
    return _hooked(target, callback, after=False)


def run_after(target: str, callback: Callable[..., Any]) -> Any:
    """Within the block, the first call of `target` runs `callback(*args, **kwargs)` after it
    returns (and before its caller sees the result)."""
    return _hooked(target, callback, after=True)
