"""A bus node in a child process, for the integration tests (run as a script).

Usage: python rpc_child.py NAME BIND [KEYFILE]

Binds BIND (or, written ``connect:ADDRESS``, connects to ADDRESS), exposes a few
methods, prints ``READY <endpoint>`` once started, and runs until killed. With
KEYFILE, the bus uses CURVE with the keys in it.
"""

from __future__ import annotations

import sys
from typing import Any

from plait.cluster import _rpc_keys
from plait.cluster.defer import Deferred
from plait.cluster.reactor import Reactor
from plait.cluster.rpc import Bus


def main() -> None:
    name, bind = sys.argv[1], sys.argv[2]
    curve = _rpc_keys.load(sys.argv[3]) if len(sys.argv) > 3 else None
    reactor = Reactor()
    if bind.startswith("connect:"):
        where: dict[str, Any] = {"connect": [bind[len("connect:") :]]}
    else:
        where = {"bind": bind}
    bus = Bus(name, reactor, curve=curve, heartbeat=0.2, heartbeat_timeout=0.6, **where)
    bus.expose("add", lambda a, b: a + b)
    bus.expose("echo", lambda *args, **kwargs: [args, kwargs])
    bus.expose("never", lambda: Deferred())
    bus.expose("fail", lambda: 1 / 0)
    bus.expose("pid", lambda: __import__("os").getpid())

    def later(delay: float) -> dict[str, Deferred[str]]:
        done: Deferred[str] = Deferred()
        reactor.call_later(delay, done.callback, "later")
        return {"done": done}

    bus.expose("later", later)
    bus.expose("announce", bus.publish)
    bus.expose("ask", bus.call)

    def ready(_: Any) -> None:
        print("READY", bus.endpoint, flush=True)

    bus.start().add_callback(ready)
    reactor.run()


if __name__ == "__main__":
    main()
