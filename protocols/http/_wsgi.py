"""The sans-IO half of WSGI (PEP 3333): the environ and ``start_response`` rules.

``build_environ`` makes the environ of a request whose body has been read whole
(``wsgi.input`` is a file over it). ``StartResponse`` is the state behind
``start_response``: called again with ``exc_info`` before the head went out, it
replaces the status and headers; after, it re-raises the exception; called twice
without ``exc_info``, it refuses. The thread-pool adapter is ``wsgi.py``.
"""

from __future__ import annotations

import io
import sys
from typing import Any
from urllib.parse import unquote_to_bytes

from ._request import Request

__all__ = ["StartResponse", "build_environ", "parse_status"]

_SKIP_HEADERS = frozenset([b"content-type", b"content-length"])


class StartResponse:
    """The status and headers an application gave ``start_response``."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        """Set by the server once the head has left (``exc_info`` then re-raises)."""

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> None:
        """PEP 3333 ``start_response`` (without the ``write`` it returns).

        Raises:
            AssertionError: called twice without ``exc_info``.
            ValueError: a malformed status.
            TypeError: header names or values that are not ``str``.
            BaseException: ``exc_info``'s exception, once the head was sent.
        """
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # PEP 3333: avoid a reference cycle
        elif self.status is not None:
            raise AssertionError("start_response called twice without exc_info")
        if not isinstance(status, str) or len(status) < 4 or not status[:3].isdigit():
            raise ValueError(f"invalid WSGI status {status!r}")
        if status[3] != " ":
            raise ValueError(f"invalid WSGI status {status!r}")
        for name, value in headers:
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError("WSGI header names and values must be str")
        self.status = status
        self.headers = list(headers)


def parse_status(status: str) -> tuple[int, str]:
    """``"404 Not Found"`` -> ``(404, "Not Found")``."""
    code, _, reason = status.partition(" ")
    return int(code), reason


def _host_port(host: bytes) -> tuple[str, str]:
    text = host.decode("latin-1")
    if text.startswith("["):  # an IPv6 literal, RFC 3986 section 3.2.2
        end = text.find("]") + 1
        rest = text[end:]
        return text[:end], rest[1:] if rest.startswith(":") else ""
    name, _, port = text.partition(":")
    return name, port


def build_environ(
    request: Request, body: bytes, *, script_name: str = "", multiprocess: bool = False
) -> dict[str, Any]:
    """The PEP 3333 environ for ``request``, whose whole body is ``body``."""
    headers = request.headers
    server = request.server
    name, port = _host_port(headers.get(b"host") or b"")
    if isinstance(server, tuple) and len(server) >= 2:
        name = name or str(server[0])
        port = port or str(server[1])
    client = request.client
    # PEP 3333: PATH_INFO is the decoded path, as bytes decoded as latin-1.
    path = unquote_to_bytes(request.raw_path).decode("latin-1")
    if script_name and path.startswith(script_name):
        path = path[len(script_name) :]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": request.query_string,
        "SERVER_NAME": name or "localhost",
        "SERVER_PORT": port or "80",
        "SERVER_PROTOCOL": "HTTP/" + request.version,
        "REMOTE_ADDR": str(client[0]) if isinstance(client, tuple) and client else "",
        "REMOTE_PORT": str(client[1]) if isinstance(client, tuple) and len(client) > 1 else "",
        "CONTENT_LENGTH": str(len(body)) if body or b"content-length" in headers else "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
    }
    content_type = headers.get(b"content-type")
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type.decode("latin-1")
    for lower, value in headers:
        if lower in _SKIP_HEADERS:
            continue
        key = "HTTP_" + lower.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        # RFC 9110 section 5.3: repeated fields combine with commas (cookies: "; ").
        if key in environ:
            sep = "; " if key == "HTTP_COOKIE" else ","
            environ[key] = environ[key] + sep + text
        else:
            environ[key] = text
    return environ
