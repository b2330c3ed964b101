"""The transport conformance suite and the transports it runs against.

``suite.py`` holds the checks, written once as methods of ``TransportConformance``
against a small abstraction: a ``PairBuilder`` whose ``open()`` returns a ``Pair``
(``server`` and ``client`` ``Recorder`` protocols, both past ``connection_made``,
and ``drive(until, timeout) -> bool``, which runs the loop or pump until
``until()`` holds and says whether it did). Each ``test_<transport>.py`` module
subclasses the suite once, as ``Test<Name>Transport`` with a ``builder`` fixture:

- ``test_memory.py``: ``connect_in_memory`` and ``IOPump`` (``MemoryPairBuilder``);
- ``test_tcp.py``: real TCP on 127.0.0.1, ephemeral port, native ``Reactor``;
- ``test_unix.py``: real Unix stream sockets in a private temporary directory.

Adding a transport or a reactor takes a few lines. ``suite.ReactorPairBuilder``
serves any reactor-backed transport given how to make the reactor, how to listen
and how to connect; it drives with ``reactor.run()``/``stop()`` and a polling
``call_later``. TLS, for instance::

    # tests/conformance/test_tls.py
    class TestTLSTransport(TransportConformance):
        @pytest.fixture
        def builder(self) -> Iterator[PairBuilder]:
            builder = ReactorPairBuilder(
                "tls",
                Reactor,
                listen=lambda r, f: r.listen_ssl(0, f, SERVER_OPTIONS, interface="127.0.0.1"),
                connect=lambda r, port, f: r.connect_ssl(
                    "127.0.0.1", port.get_host()[1], f, CLIENT_OPTIONS),
            )
            yield builder
            builder.close()

For another reactor over TCP or Unix, reuse the module's factory with the other
constructor: ``tcp_builder(AsyncioReactor)`` (``test_tcp.py``) or
``unix_builder(path, AsyncioReactor)`` (``test_unix.py``), in a new class such as
``TestTCPTransportOnAsyncio``. A transport that cannot meet a check states so with
a capability of its builder (``abort_resets_peer=False`` for Unix sockets, whose
peer sees a plain EOF; ``carries_fds=True`` for transports with ``send_fds``),
never by skipping the check.
"""
