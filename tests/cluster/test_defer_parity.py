"""Plait's Deferred against Twisted's on random programs: the same callbacks see the same values.

Each program makes a few Deferreds, adds callbacks, errbacks and both-backs of several
kinds (pass on, change the value, raise, return a fired or failed Deferred, return
another of the program's Deferreds that fires later), chains some Deferreds to others,
and fires them in some order.
Every callback logs what it received; the logs of both implementations must match.
Seeded, so deterministic. Pausing and cancelling are left out: there Plait departs
from Twisted on purpose (see docs/deferreds.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet import defer as tdefer
from twisted.python import failure as tfailure

from plait.cluster import defer as pdefer
from plait.cluster import failure as pfailure

KINDS = ("pass", "inc", "raise", "fired", "failed", "later", "chain")


class Impl:
    """The few entry points a program needs, for one implementation."""

    def __init__(self, twisted: bool) -> None:
        self.twisted = twisted
        self.deferred: Callable[[], Any] = tdefer.Deferred if twisted else pdefer.Deferred
        self.succeed: Callable[[Any], Any] = tdefer.succeed if twisted else pdefer.succeed
        self.fail: Callable[[BaseException], Any] = tdefer.fail if twisted else pdefer.fail
        self.failure_type: type = tfailure.Failure if twisted else pfailure.Failure

    def chain(self, d: Any, other: Any) -> None:
        (d.chainDeferred if self.twisted else d.chain_deferred)(other)

    def add(self, d: Any, which: str, f: Callable[[Any], Any]) -> None:
        name = {"cb": "addCallback", "eb": "addErrback", "both": "addBoth"}[which]
        if not self.twisted:
            name = {"cb": "add_callback", "eb": "add_errback", "both": "add_both"}[which]
        getattr(d, name)(f)


def describe(value: Any, impl: Impl) -> Any:
    if isinstance(value, impl.failure_type):
        error: Any = value.value  # type: ignore[attr-defined]
        return ("failure", type(error).__name__, str(error))
    return ("value", value)


def run_program(seed: int, impl: Impl) -> list[Any]:
    rng = random.Random(seed)
    n = rng.randint(2, 6)
    ds = [impl.deferred() for _ in range(n)]
    log: list[Any] = []
    returned: set[int] = set()  # each Deferred is returned by at most one callback
    chained: set[int] = set()  # ... or chained to at most one Deferred, never fired

    def make(i: int, step: int, kind: str, later: int | None) -> Callable[[Any], Any]:
        def callback(value: Any) -> Any:
            log.append((i, step, kind, describe(value, impl)))
            if kind == "pass":
                return value
            if kind == "inc":
                return (value if isinstance(value, int) else 0) + 1
            if kind == "raise":
                raise ValueError(f"{i}.{step}")
            if kind == "fired":
                return impl.succeed(100 + step)
            if kind == "failed":
                return impl.fail(KeyError(f"{i}.{step}"))
            assert later is not None
            return ds[later]

        return callback

    for i in range(n):
        for step in range(rng.randint(0, 5)):
            kind = rng.choice(KINDS)
            later = None
            if kind in ("later", "chain"):
                candidates = [j for j in range(i + 1, n) if j not in returned | chained]
                if not candidates:
                    kind = "inc"
                else:
                    later = rng.choice(candidates)
                    (returned if kind == "later" else chained).add(later)
            if kind == "chain":
                assert later is not None
                impl.chain(ds[i], ds[later])
                continue
            impl.add(ds[i], rng.choice(("cb", "eb", "both")), make(i, step, kind, later))

    order = list(range(n))
    rng.shuffle(order)
    for i in order:  # returned Deferreds fire before or after the chain waits on them
        if i in chained:
            continue
        if rng.random() < 0.7:
            ds[i].callback(i)
        else:
            ds[i].errback(OSError(f"fired {i}"))

    for i, d in enumerate(ds):
        final: list[Any] = []

        def record(value: Any, final: list[Any] = final) -> None:
            final.append(describe(value, impl))

        impl.add(d, "both", record)
        log.append(("final", i, final))
    return log


@pytest.mark.parametrize("seed", range(300))
def test_same_callbacks_see_the_same_values_as_in_twisted(seed: int) -> None:
    assert run_program(seed, Impl(twisted=False)) == run_program(seed, Impl(twisted=True))
