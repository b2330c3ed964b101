"""plait.cluster.reactor: the reactors and how to run one.

``Reactor`` is the native reactor (stdlib ``selectors``: epoll on Linux);
``AsyncioReactor(loop)`` offers the same interfaces on any asyncio loop (uvloop's too),
and ``QtReactor(app)`` on Qt's event loop (PySide6, imported only when one is made).
``get_reactor()`` returns the process's reactor, made on first use, and
``react(main, argv)`` runs ``main(reactor, *argv)`` until what it returns finishes,
then exits the process.
"""

from __future__ import annotations

from plait.cluster._delayed_call import DelayedCall
from plait.cluster._react import get_reactor, react, set_reactor
from plait.cluster._reactor_asyncio import AsyncioReactor
from plait.cluster._reactor_qt import QtReactor
from plait.cluster._reactor_select import (
    Handle,
    Reactor,
    ReactorNotRunning,
    ReactorStatistics,
)
from plait.cluster._tcp import Port

__all__ = [
    "AsyncioReactor",
    "DelayedCall",
    "Handle",
    "Port",
    "QtReactor",
    "Reactor",
    "ReactorNotRunning",
    "ReactorStatistics",
    "get_reactor",
    "react",
    "set_reactor",
]
