"""The transport conformance suite and the transports it runs against.

``suite.py`` holds the checks, written once as methods of ``TransportConformance``
against a small abstraction: a ``PairBuilder`` whose ``open()`` returns a ``Pair``
(``server`` and ``client`` ``Recorder`` protocols, both past ``connection_made``,
and ``drive(until, timeout) -> bool``, which runs the loop or pump until
``until()`` holds). Each ``test_<transport>.py`` module subclasses it once:

- ``test_memory.py``: ``connect_in_memory`` and ``IOPump``;
- ``test_tcp.py``: real TCP on 127.0.0.1 with ``plait.cluster.reactor.Reactor``;
- ``test_unix.py``: real Unix stream sockets (``listen_unix``/``connect_unix``).

Adding a transport or a reactor takes a few lines. For a reactor-backed transport,
reuse ``ReactorPairBuilder`` from ``test_tcp.py`` and give it three callables: how
to make the reactor, how to listen, how to connect. For TLS, for instance::

    # tests/conformance/test_tls.py
    class TestTLS(TransportConformance):
        @pytest.fixture
        def builder(self, tls_files) -> Iterator[PairBuilder]:
            builder = ReactorPairBuilder(
                "tls",
                Reactor,
                listen=lambda r, f: r.listen_ssl(0, f, server_opts, interface="127.0.0.1"),
                connect=lambda r, port, f: r.connect_ssl(
                    "127.0.0.1", port.get_host()[1], f, client_opts),
            )
            yield builder
            builder.close()

and for another reactor on TCP (``AsyncioReactor``), pass its constructor instead
of ``Reactor``. A transport that cannot meet a check states it with a capability
attribute of its builder (``abort_resets_peer = False`` for Unix sockets, whose
peer sees a plain EOF), never by skipping the check.
"""
