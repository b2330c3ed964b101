"""Checking and preparing an HTTP client request, and the redirect rules, without I/O.

Theory of operation. ``prepare(method, url, headers, body)`` turns what an
application passes to ``Agent.request`` into a ``Prepared`` request, or raises at
once: ``ValueError`` for a bad method (not a token, or ``CONNECT``), URL, header
name or value (no CR, LF or other controls, RFC 9110 section 5.5) or an
``Upgrade`` header, ``TypeError`` for a body of an unsupported type. The URL
must be absolute ``http`` or ``https`` with a host and a port in 1-65535; a
non-ASCII host is IDNA-encoded and the path and query are percent-quoted
(``split_url``, cached, as clients ask for the same URLs again and again). The
head gets ``Host`` and ``User-Agent`` unless given, and framing (RFC 9112
section 6): ``Content-Length`` for bytes and for body producers of known
``length`` (and ``Content-Length: 0`` for a bodiless POST, PUT or PATCH),
``Transfer-Encoding: chunked`` for other iterables and producers unless the
caller gave a ``Content-Length``. A request is ``replayable`` when its body is
``None`` or bytes: only those are sent again, on a retry or a 307/308.

``redirected(prepared, status, location)`` is the request to send after a 3xx
(RFC 9110 section 15.4), or ``None`` when the response should be handed back:
301/302 turn a POST into a GET without a body and 303 turns any method but HEAD
into one; 307/308 keep method and body, so a consumed (non-replayable) body
cannot follow. A ``Location`` that is not an http(s) URL is not followed.
``Authorization``, ``Cookie`` and ``Proxy-Authorization`` are dropped when the
origin (``key``: scheme, host, port) changes.

The adapter (``client``) owns everything that touches the reactor: the pool,
timers, proxies and the response.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from ._abnf import is_token
from ._headers import Headers, to_bytes

__all__ = [
    "IDEMPOTENT",
    "REDIRECTS",
    "USER_AGENT",
    "HeaderInput",
    "Prepared",
    "check_timeout",
    "prepare",
    "redirected",
    "split_url",
]

HeaderInput = Headers | Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[Any, Any]] | None

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = b"plait/0.1"

_DEFAULT_PORTS = {"http": 80, "https": 443}
_BODY_EXPECTED = frozenset({b"POST", b"PUT", b"PATCH"})
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f]")
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class Prepared:
    """A checked request: wire head fields, body and origin (``key``)."""

    __slots__ = ("authority", "body", "headers", "key", "method", "replayable", "target", "url")

    def __init__(
        self,
        method: bytes,
        url: str,
        key: tuple[str, str, int],
        authority: bytes,
        target: bytes,
        headers: Headers,
        body: Any,
    ) -> None:
        self.method = method
        self.url = url
        self.key = key
        self.authority = authority
        self.target = target
        self.headers = headers
        self.body = body
        self.replayable = body is None or isinstance(body, bytes)


def check_timeout(timeout: object) -> None:
    """Raise ``ValueError`` unless ``timeout`` is ``None`` or a number > 0."""
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise ValueError(f"timeout must be None or > 0, not {timeout!r}")


def split_url(url: object) -> tuple[str, str, int, bytes, bytes]:
    """Return ``(scheme, host, port, Host header value, target)``.

    Raises:
        ValueError: not an absolute http(s) URL with a host and a valid port.
    """
    if not isinstance(url, str):
        raise ValueError(f"the URL must be a str, not {type(url).__name__}")
    return _split_str_url(url)


@functools.lru_cache(maxsize=512)  # clients ask the same URLs again and again
def _split_str_url(url: str) -> tuple[str, str, int, bytes, bytes]:
    if _BAD_URL_CHARS.search(url):
        raise ValueError(f"the URL {url!r} contains spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} in {url!r} (use http or https)")
    host = parts.hostname
    if not host:
        raise ValueError(f"the URL {url!r} has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"the URL {url!r} has an invalid port") from exc
    if port == 0:
        raise ValueError(f"the URL {url!r} has an invalid port")
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    try:
        host_ascii = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:
        raise ValueError(f"the URL {url!r} has an invalid host name") from exc
    shown = f"[{host_ascii}]" if ":" in host_ascii else host_ascii
    if port != _DEFAULT_PORTS[scheme]:
        shown = f"{shown}:{port}"
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    target = path if not parts.query else f"{path}?{quote(parts.query, safe=_PATH_SAFE + '?')}"
    return scheme, host_ascii, port, shown.encode("ascii"), target.encode("ascii")


def prepare(method: str | bytes, url: str, headers: HeaderInput, body: Any) -> Prepared:
    """Check a request and build its head: ``Host``, ``User-Agent`` and framing.

    Raises:
        ValueError: an invalid method, URL, header or an ``Upgrade`` header.
        TypeError: a body of an unsupported type.
    """
    raw_method = to_bytes(method) if isinstance(method, str | bytes) else b""
    if not is_token(raw_method):
        raise ValueError(f"invalid HTTP method {method!r}")
    if raw_method == b"CONNECT":
        raise ValueError("CONNECT (tunnels) is not supported by the HTTP client")
    scheme, host, port, host_header, target = split_url(url)
    fields = _headers(headers)
    names = fields.lower_names()
    if b"upgrade" in names:
        raise ValueError(
            "Upgrade is not supported by the HTTP client (for WebSocket, use"
            " plait.protocols.websocket.connect)"
        )
    if b"host" not in names:
        fields.add(b"Host", host_header)
    if b"user-agent" not in names:
        fields.add(b"User-Agent", USER_AGENT)
    if isinstance(body, bytearray | memoryview):
        body = bytes(body)
    if isinstance(body, bytes):
        if body or raw_method in _BODY_EXPECTED:
            fields.set(b"Content-Length", str(len(body)).encode("ascii"))
    elif body is None:
        if raw_method in _BODY_EXPECTED and b"content-length" not in names:
            fields.add(b"Content-Length", b"0")
    elif hasattr(body, "start_producing"):
        length = getattr(body, "length", None)
        if isinstance(length, int) and length >= 0:
            fields.set(b"Content-Length", str(length).encode("ascii"))
        elif b"content-length" not in names:
            fields.set(b"Transfer-Encoding", b"chunked")
    elif isinstance(body, AsyncIterable | Iterable) and not isinstance(body, str):
        if b"content-length" not in names:
            fields.set(b"Transfer-Encoding", b"chunked")
    else:
        raise TypeError(
            f"the request body must be bytes, an iterable or async iterable of bytes,"
            f" or a body producer, not {type(body).__name__}"
        )
    _check_fields(fields)
    return Prepared(raw_method, url, (scheme, host, port), host_header, target, fields, body)


def _headers(headers: HeaderInput) -> Headers:
    if headers is None:
        return Headers()
    if isinstance(headers, Headers):
        return headers.copy()
    try:
        if isinstance(headers, Mapping):
            return Headers(headers.items())
        return Headers(headers)
    except (TypeError, ValueError, UnicodeError) as exc:
        raise ValueError(f"invalid request headers: {exc}") from exc


def _check_fields(fields: Headers) -> None:
    for name, value in fields.raw_items():
        if not is_token(name):
            raise ValueError(f"invalid header name {name!r}")
        if _BAD_VALUE.search(value):
            raise ValueError(f"invalid header value {value!r} for {name!r}")


def redirected(prepared: Prepared, status: int, location: str) -> Prepared | None:
    """The request to send after a redirect, or None when it cannot be followed."""
    url = urljoin(prepared.url, location)
    method = prepared.method
    body = prepared.body
    if (status == 303 and method != b"HEAD") or (status in (301, 302) and method == b"POST"):
        method, body = b"GET", None
    elif not prepared.replayable:
        return None  # 307/308 must resend the body, and this one was consumed
    headers = prepared.headers.copy()
    for name in (b"host", b"content-length", b"transfer-encoding"):
        headers.remove(name)
    try:
        follow = prepare(method, url, headers, body)
    except ValueError:
        return None  # a Location we cannot follow (another scheme, say): hand it back
    if follow.key != prepared.key:
        for name in (b"authorization", b"cookie", b"proxy-authorization"):
            follow.headers.remove(name)
    return follow
