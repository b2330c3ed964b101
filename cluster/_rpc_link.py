"""The seam between the bus's node logic and what carries its bytes.

A *link* moves opaque frames between this node and its peers; it knows nothing of
calls. Each peer connection has a *route* (bytes, opaque to the node: a ZeroMQ
routing id, or a memory pipe's id). The node drives a link through ``IBusLink``;
the link reports back through the ``LinkEvents`` shape, which the bus provides:

* ``link_connected(route)``: a connection this node opened is (re)established; the
  node says hello on it.
* ``link_received(route, data)``: one frame arrived.
* ``link_lost(route, reason)``: the connection behind ``route`` is gone (the peer
  died, a heartbeat timed out, a send found no route).
"""

from __future__ import annotations

from typing import Protocol

from zope.interface import Interface

__all__ = ["IBusLink", "LinkEvents"]


class LinkEvents(Protocol):
    """What a link calls on its node."""

    def link_connected(self, route: bytes) -> None: ...

    def link_received(self, route: bytes, data: bytes) -> None: ...

    def link_lost(self, route: bytes, reason: str) -> None: ...


class IBusLink(Interface):
    """Carries a bus node's frames (ZeroMQ sockets, or memory for tests)."""

    def start(events: LinkEvents) -> None:  # noqa: N805 - zope interface
        """Bind and connect; report to ``events`` from now on.

        Raises:
            OSError: an address cannot be bound or connected (``zmq.ZMQError``
                is an ``OSError`` subclass's sibling and is raised as is).
        """

    def send(route: bytes, data: bytes) -> None:  # noqa: N805 - zope interface
        """Send one frame on ``route``; never blocks.

        An unroutable frame is dropped and reported through ``link_lost`` later
        (never from inside ``send``).
        """

    def stop() -> None:
        """Close everything; no event is reported after this."""
