"""Resource trees, Twisted style: ``render_<METHOD>``, ``get_child``, ``put_child``.

Theory of operation (``twisted.web.resource``, snake_cased). The path is split on
``/`` into segments, percent-decoded; ``request.postpath`` starts as all of them
and ``request.prepath`` empty. From the root, while segments remain and the current
resource is not a leaf (``is_leaf``), the next segment moves from ``postpath`` to
``prepath`` and ``get_child_with_default(name, request)`` picks the child: a child
added with ``put_child``, else whatever ``get_child`` returns (by default a 404
resource). The resource reached renders: ``render(request)`` calls
``render_<METHOD>`` (Twisted's ``render_GET``; ``render_get`` is accepted too, for
PEP 8 linters; ``render_GET`` answers HEAD as well), or answers 405 with an
``Allow`` header listing the ``render_*`` methods it has. As in Twisted, ``/`` is the
segment ``""``: put a child under ``""`` (or make the root a leaf) to serve it.
Render methods return what any application returns; there is no ``NOT_DONE_YET``:
return a Deferred or a coroutine instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from ._request import Request
from ._response import Response

__all__ = ["NoResource", "Resource", "resource_app"]


class Resource:
    """A node of a resource tree.

    Example:
        >>> class Hello(Resource):
        ...     is_leaf = True
        ...     def render_GET(self, request):
        ...         return "hello"
        >>> root = Resource()
        >>> root.put_child("hello", Hello())
        >>> from plait.protocols.http import Request
        >>> resource_app(root)(Request(b"GET", b"/hello"))
        'hello'
    """

    is_leaf = False
    """A leaf renders every path below it itself (Twisted's ``isLeaf``)."""

    def __init__(self) -> None:
        self.children: dict[str, Resource] = {}

    def put_child(self, name: str, child: Resource) -> None:
        """Make ``child`` answer the path segment ``name`` below this resource."""
        if "/" in name:
            raise ValueError(f"a child name is one path segment, not {name!r}")
        self.children[name] = child

    def get_child(self, name: str, request: Request) -> Resource:
        """The child for a segment not added with ``put_child`` (override to make
        children dynamically); by default a 404 resource."""
        return NoResource()

    def get_child_with_default(self, name: str, request: Request) -> Resource:
        """The child added under ``name``, else ``get_child(name, request)``."""
        child = self.children.get(name)
        if child is not None:
            return child
        return self.get_child(name, request)

    def allowed_methods(self) -> list[str]:
        """The methods this resource renders (from its ``render_*`` methods)."""
        methods = {name[7:].upper() for name in dir(self) if name.startswith("render_")}
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods)

    def _renderer(self, method: str) -> Callable[[Request], Any] | None:
        renderer: Callable[[Request], Any] | None = getattr(self, "render_" + method, None)
        if renderer is None:  # render_get: the spelling PEP 8 linters accept
            renderer = getattr(self, "render_" + method.lower(), None)
        return renderer

    def render(self, request: Request) -> Any:
        """Call ``render_<METHOD>(request)``; 405 with ``Allow`` when there is none."""
        method = request.method
        renderer = self._renderer(method)
        if renderer is None and method == "HEAD":
            renderer = self._renderer("GET")
        if renderer is None:
            return Response(
                405,
                b"Method Not Allowed\n",
                [(b"Allow", ", ".join(self.allowed_methods())), (b"Content-Type", b"text/plain")],
            )
        return renderer(request)


class NoResource(Resource):
    """A leaf that answers 404 to everything."""

    is_leaf = True

    def render(self, request: Request) -> Any:
        return Response(404, b"Not Found\n", [(b"Content-Type", b"text/plain")])


def resource_app(root: Resource) -> Callable[[Request], Any]:
    """An application that serves the tree below ``root``."""

    def app(request: Request) -> Any:
        segments = [unquote(s, errors="surrogateescape") for s in request.raw_path.split("/")[1:]]
        request.prepath = []
        request.postpath = segments
        resource = root
        while request.postpath and not resource.is_leaf:
            name = request.postpath.pop(0)
            request.prepath.append(name)
            resource = resource.get_child_with_default(name, request)
        return resource.render(request)

    return app
