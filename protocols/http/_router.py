"""Router: dispatch requests to handlers by method and path pattern.

Theory of operation. A pattern is a path with ``{name}`` placeholders (one
segment, no ``/``) or ``{name:path}`` (the rest of the path, slashes included).
Patterns without placeholders go in a dict keyed by path, so the common case is one
lookup; the others are compiled to regular expressions tried in the order they were
added. Placeholders match the still-encoded path and their values are then
percent-decoded, so ``%2F`` inside an id stays inside that id. A path that matches
no pattern gets 404; one that matches with no handler for the method gets 405 with
an ``Allow`` header (RFC 9110 section 15.5.6). A GET handler also answers HEAD (the
server drops the body).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import unquote

from ._request import Request
from ._response import Response

__all__ = ["Router"]

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(path))?\}")


def _compile(pattern: str) -> re.Pattern[str] | None:
    if not pattern.startswith("/"):
        raise ValueError(f"a route pattern starts with '/': {pattern!r}")
    parts: list[str] = []
    pos = 0
    names: set[str] = set()
    for m in _PLACEHOLDER.finditer(pattern):
        name = m.group(1)
        if name in names:
            raise ValueError(f"placeholder {name!r} appears twice in {pattern!r}")
        names.add(name)
        parts.append(re.escape(pattern[pos : m.start()]))
        parts.append(f"(?P<{name}>.+)" if m.group(2) else f"(?P<{name}>[^/]+)")
        pos = m.end()
    if not names:
        if "{" in pattern or "}" in pattern:
            raise ValueError(f"malformed placeholder in {pattern!r}")
        return None
    rest = pattern[pos:]
    if "{" in rest or "}" in rest:
        raise ValueError(f"malformed placeholder in {pattern!r}")
    parts.append(re.escape(rest))
    return re.compile("".join(parts) + r"\Z")


def _not_found() -> Response:
    return Response(404, b"Not Found\n", [(b"Content-Type", b"text/plain")])


class Router:
    """Map ``(method, path pattern)`` to handlers; an HTTP application.

    Handlers are called as ``handler(request, **params)`` and return what any
    application returns (a ``Response``, ``bytes``/``str``, a Deferred or a
    coroutine).

    Example:
        >>> router = Router()
        >>> @router.get("/items/{id}")
        ... def item(request, id):
        ...     return f"item {id}"
        >>> from plait.protocols.http import Request
        >>> router(Request(b"GET", b"/items/42"))
        'item 42'
        >>> router(Request(b"DELETE", b"/items/42")).status
        405
    """

    def __init__(self) -> None:
        self._static: dict[str, dict[str, Handler]] = {}
        self._dynamic: list[tuple[re.Pattern[str], str, dict[str, Handler]]] = []

    def add_route(self, methods: Iterable[str] | str, pattern: str, handler: Handler) -> None:
        """Route ``methods`` on ``pattern`` to ``handler``.

        Raises:
            ValueError: a malformed pattern, or a method already routed on it.
        """
        if isinstance(methods, str):
            methods = [methods]
        regex = _compile(pattern)
        if regex is None:
            table = self._static.setdefault(pattern, {})
        else:
            for _known, source, existing in self._dynamic:
                if source == pattern:
                    table = existing
                    break
            else:
                table = {}
                self._dynamic.append((regex, pattern, table))
        for method in methods:
            method = method.upper()
            if method in table:
                raise ValueError(f"{method} {pattern} is routed already")
            table[method] = handler

    def route(self, methods: Iterable[str] | str, pattern: str) -> Callable[[H], H]:
        """Decorator: ``@router.route(["GET", "POST"], "/path")``."""

        def decorate(handler: H) -> H:
            self.add_route(methods, pattern, handler)
            return handler

        return decorate

    def get(self, pattern: str) -> Callable[[H], H]:
        """Decorator for GET (which also answers HEAD)."""
        return self.route("GET", pattern)

    def post(self, pattern: str) -> Callable[[H], H]:
        """Decorator for POST."""
        return self.route("POST", pattern)

    def put(self, pattern: str) -> Callable[[H], H]:
        """Decorator for PUT."""
        return self.route("PUT", pattern)

    def delete(self, pattern: str) -> Callable[[H], H]:
        """Decorator for DELETE."""
        return self.route("DELETE", pattern)

    def patch(self, pattern: str) -> Callable[[H], H]:
        """Decorator for PATCH."""
        return self.route("PATCH", pattern)

    def head(self, pattern: str) -> Callable[[H], H]:
        """Decorator for HEAD (overrides the GET handler's answer to HEAD)."""
        return self.route("HEAD", pattern)

    def routes(self) -> list[tuple[str, str]]:
        """Every ``(method, pattern)`` routed, in the order they were added."""
        out = [(m, p) for p, table in self._static.items() for m in table]
        out += [(m, p) for _, p, table in self._dynamic for m in table]
        return out

    def __call__(self, request: Request) -> Any:
        """Dispatch ``request``: the handler's result, or a 404/405 ``Response``."""
        table = self._static.get(request.path)
        params: dict[str, str] = {}
        if table is None:
            raw = request.raw_path
            for regex, _, candidate in self._dynamic:
                m = regex.match(raw)
                if m is not None:
                    table = candidate
                    params = {
                        k: unquote(v, errors="surrogateescape") for k, v in m.groupdict().items()
                    }
                    break
            else:
                return _not_found()
        method = request.method
        handler = table.get(method)
        if handler is None and method == "HEAD":
            handler = table.get("GET")
        if handler is None:
            allowed = set(table)
            if "GET" in allowed:
                allowed.add("HEAD")
            allow = ", ".join(sorted(allowed))
            return Response(
                405, b"Method Not Allowed\n", [(b"Allow", allow), (b"Content-Type", b"text/plain")]
            )
        return handler(request, **params)
