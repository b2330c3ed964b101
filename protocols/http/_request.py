"""The application-facing request: what a handler sees of one HTTP request.

Theory of operation. The server builds a ``Request`` from the core's request event
and does as little as it can up front: ``method``, ``path``, ``query`` and
``version`` are computed from the raw bytes on first use and cached, and
``headers`` is the core's ``Headers`` object itself (the server's fast path
hands over the head's bytes instead, parsed into ``Headers`` on first use, so a
handler that never looks at the headers never pays for them). The body arrives
later, event by event, into a body source that the server supplies (its
``RequestBody``, in ``streams.py``, which hands out Deferreds; this module stays
sans-IO): ``await request.body()`` collects it whole, ``request.stream()`` hands out
chunks as they come. A request without a body shares one empty ``FixedBody``, so
the hot path allocates nothing for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Generator
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from ._headers import Headers
from ._readers import plain_head_fields

__all__ = ["BodyError", "BodySource", "FixedBody", "Request"]

_METHODS: dict[bytes, str] = {}
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}


class BodyError(Exception):
    """The request body could not be read whole (the peer closed, timed out or broke
    the framing); ``status`` is what the server answers if it still can."""

    def __init__(self, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.status = status


class BodySource(Protocol):
    """Where a request's body comes from: the server's ``RequestBody`` (Deferreds), or
    ``FixedBody`` for a request made by hand."""

    @property
    def done(self) -> bool:
        """Whether the last byte arrived (or the body failed)."""

    def read_all(self) -> Awaitable[bytes]:
        """An awaitable of every remaining byte, once the body has ended."""

    def next_chunk(self) -> Awaitable[bytes]:
        """An awaitable of the next chunk; ``b""`` once the body has ended."""


class _Ready:
    """An awaitable that is already resolved: ``await`` never suspends."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, Any, bytes]:
        return self._value
        yield  # a generator that returns at once


class FixedBody:
    """A body known in full up front (a request built by hand, in a test)."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes = b"") -> None:
        self._data = data

    @property
    def done(self) -> bool:
        return True

    def read_all(self) -> _Ready:
        data, self._data = self._data, b""
        return _Ready(data)

    def next_chunk(self) -> _Ready:
        return self.read_all()


_EMPTY_BODY = FixedBody()


class Request:
    """One HTTP request, as an application sees it.

    Attributes:
        headers: The header fields (``Headers``: case-insensitive names, ``bytes``
            values, duplicates kept in order).
        client: The peer's address (``transport.get_extra_info("peername")``).
        server: Our own address (``"sockname"``).
        reactor: The reactor serving the request (for ``defer_to_thread`` and
            timers), or None for a test that gave none.
        raw_method: The method as received.
        target: The request target as received (path and query, still encoded).
        prepath: Path segments a ``Resource`` tree has consumed (Twisted's
            ``prepath``).
        postpath: Path segments still to be consumed.

    Example:
        >>> from plait.protocols.http import Headers, Request
        >>> r = Request(b"GET", b"/a%20b?x=1&x=2", Headers([("Host", "h")]))
        >>> r.method, r.path, r.query, r.headers.get("host")
        ('GET', '/a b', {'x': ['1', '2']}, b'h')
    """

    __slots__ = (
        "_body",
        "_path",
        "_query",
        "client",
        "_headers",
        "_headers_from",
        "http_version",
        "postpath",
        "prepath",
        "raw_method",
        "reactor",
        "server",
        "target",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: Headers | None = None,
        http_version: bytes = b"1.1",
        *,
        client: Any = None,
        server: Any = None,
        reactor: Any = None,
        body: bytes | BodySource | None = None,
    ) -> None:
        self.raw_method = method
        self.target = target
        self._headers = headers if headers is not None else Headers()
        self._headers_from: bytes | None = None
        self.http_version = http_version
        self.client = client
        self.server = server
        self.reactor = reactor
        if body is None:
            self._body: BodySource = _EMPTY_BODY
        elif isinstance(body, bytes | bytearray):
            self._body = FixedBody(bytes(body))
        else:
            self._body = body
        self._path: str | None = None
        self._query: dict[str, list[str]] | None = None
        self.prepath: list[str] = []
        self.postpath: list[str] = []

    @classmethod
    def _plain(
        cls,
        method: bytes,
        target: bytes,
        head: bytes,
        http_version: bytes,
        client: Any,
        server: Any,
        reactor: Any,
    ) -> Request:
        """A bodiless request whose headers are parsed from ``head`` on first use
        (``head`` is one that ``parse_plain_request_head`` accepted)."""
        self = cls.__new__(cls)
        self.raw_method = method
        self.target = target
        self._headers = None  # type: ignore[assignment]
        self._headers_from = head
        self.http_version = http_version
        self.client = client
        self.server = server
        self.reactor = reactor
        self._body = _EMPTY_BODY
        self._path = None
        self._query = None
        self.prepath = []
        self.postpath = []
        return self

    @property
    def headers(self) -> Headers:
        """The header fields: case-insensitive names, ``bytes`` values, repeats kept."""
        headers = self._headers
        if headers is None:
            assert self._headers_from is not None
            headers = self._headers = plain_head_fields(self._headers_from)
        return headers

    @headers.setter
    def headers(self, headers: Headers) -> None:
        self._headers = headers

    @property
    def method(self) -> str:
        """The method, ``"GET"``, ``"POST"``..."""
        method = _METHODS.get(self.raw_method)
        if method is None:
            method = self.raw_method.decode("ascii")
            if len(_METHODS) < 64:
                _METHODS[self.raw_method] = method
        return method

    @property
    def raw_path(self) -> str:
        """The path part of the target, still percent-encoded."""
        target = self.target
        q = target.find(b"?")
        return (target if q < 0 else target[:q]).decode("latin-1")

    @property
    def path(self) -> str:
        """The path, percent-decoded as UTF-8 (invalid sequences are kept escaped)."""
        path = self._path
        if path is None:
            raw = self.raw_path
            path = self._path = unquote(raw, errors="surrogateescape") if "%" in raw else raw
        return path

    @property
    def query_string(self) -> str:
        """The query part of the target (after ``?``), still encoded; ``""`` if none."""
        _, _, query = self.target.partition(b"?")
        return query.decode("latin-1")

    @property
    def query(self) -> dict[str, list[str]]:
        """The query arguments: each name with the list of its values, in order."""
        query = self._query
        if query is None:
            qs = self.query_string
            query = self._query = parse_qs(qs, keep_blank_values=True) if qs else {}
        return query

    @property
    def version(self) -> str:
        """The HTTP version, ``"1.1"`` or ``"1.0"``."""
        return _VERSIONS.get(self.http_version) or self.http_version.decode("ascii")

    @property
    def body_complete(self) -> bool:
        """Whether the whole body has been received already."""
        return self._body.done

    def body(self) -> Awaitable[bytes]:
        """The whole body, once it has arrived (``await request.body()``).

        Returns:
            For a served request, a Deferred that fires with the body's bytes
            (``b""`` for none), or errbacks with ``BodyError`` if the body cannot
            be read whole (the client went away, broke the framing, or was too
            slow). For a request built by hand, an awaitable of its bytes.
        """
        return self._body.read_all()

    async def stream(self) -> AsyncIterator[bytes]:
        """The body chunk by chunk, as it arrives (``async for chunk in request.stream()``).

        Raises:
            BodyError: the body cannot be read whole.
        """
        body = self._body
        while True:
            chunk = await body.next_chunk()
            if not chunk:
                return
            yield chunk

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target.decode('latin-1')!r}>"
