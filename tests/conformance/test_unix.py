"""The conformance suite over real Unix stream sockets with the native ``Reactor``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.cluster.reactor import Reactor
from tests.conformance.suite import PairBuilder, ReactorPairBuilder, TransportConformance


def unix_builder(path: str, make_reactor: type[Reactor] = Reactor) -> ReactorPairBuilder:
    """Pairs over a Unix stream socket at ``path`` for ``make_reactor``.

    A Unix socket has no RST: the peer of an aborting side sees a plain EOF, so
    ``abort_resets_peer`` is False. Unix transports carry descriptors.
    """
    return ReactorPairBuilder(
        "unix",
        make_reactor,
        listen=lambda reactor, factory: reactor.listen_unix(path, factory),
        connect=lambda reactor, port, factory: reactor.connect_unix(path, factory, timeout=5),
        abort_resets_peer=False,
        carries_fds=True,
    )


class TestUnixTransport(TransportConformance):
    @pytest.fixture
    def builder(self) -> Iterator[PairBuilder]:
        # Not tmp_path: a socket path must fit in sun_path (108 bytes).
        directory = tempfile.mkdtemp(prefix="plait-conf-")
        builder = unix_builder(str(Path(directory) / "s.sock"))
        try:
            yield builder
        finally:
            builder.close()
            shutil.rmtree(directory, ignore_errors=True)
