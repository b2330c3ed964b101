"""Resource trees, Twisted style: traversal, get_child, put_child, render_<METHOD>, 405."""

from __future__ import annotations

from typing import Any

import pytest

from plait.protocols.http import NoResource, Request, Resource, Response
from plait.protocols.http._resource import resource_app

from ._server_helpers import one, serve


class Text(Resource):
    is_leaf = True

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def render_GET(self, request: Request) -> str:  # noqa: N802
        return f"{self.text} pre={request.prepath} post={request.postpath}"


class Dynamic(Resource):
    def get_child(self, name: str, request: Request) -> Resource:
        return Text(f"dynamic {name}")


def call(root: Resource, target: bytes, method: bytes = b"GET") -> Any:
    return resource_app(root)(Request(method, target))


def tree() -> Resource:
    root = Resource()
    root.put_child("", Text("index"))
    root.put_child("leaf", Text("leaf"))
    branch = Resource()
    branch.put_child("deep", Text("deep"))
    root.put_child("branch", branch)
    root.put_child("dyn", Dynamic())
    return root


def test_the_root_path_is_the_empty_child() -> None:
    assert call(tree(), b"/") == "index pre=[''] post=[]"


def test_put_child_children_are_found_by_segment() -> None:
    assert call(tree(), b"/branch/deep") == "deep pre=['branch', 'deep'] post=[]"


def test_a_leaf_gets_the_rest_of_the_path_in_postpath() -> None:
    assert call(tree(), b"/leaf/a/b%20c") == "leaf pre=['leaf'] post=['a', 'b c']"


def test_get_child_makes_children_dynamically() -> None:
    assert call(tree(), b"/dyn/anything").startswith("dynamic anything")


def test_an_unknown_child_is_a_404() -> None:
    response = call(tree(), b"/branch/missing")
    assert isinstance(response, Response)
    assert response.status == 404


def test_a_missing_render_method_is_a_405_listing_the_others() -> None:
    class PostOnly(Resource):
        is_leaf = True

        def render_POST(self, request: Request) -> str:  # noqa: N802
            return "posted"

        def render_get(self, request: Request) -> str:
            return "got"

    root = Resource()
    root.put_child("p", PostOnly())
    response = call(root, b"/p", b"DELETE")
    assert response.status == 405
    assert dict(response.headers)[b"Allow"] == b"GET, HEAD, POST"
    assert call(root, b"/p", b"HEAD") == "got"  # render_get, lower case, works too
    assert call(root, b"/p", b"GET") == "got"


def test_no_resource_answers_404_to_every_method() -> None:
    assert NoResource().render(Request(b"PUT", b"/")).status == 404


def test_a_child_name_with_a_slash_is_refused() -> None:
    with pytest.raises(ValueError):
        Resource().put_child("a/b", Resource())


def test_a_resource_tree_serves_through_a_site() -> None:
    class Later(Resource):
        is_leaf = True

        async def render_PUT(self, request: Request) -> Response:  # noqa: N802
            return Response(201, b"stored " + await request.body())

    root = tree()
    root.put_child("store", Later())
    served = serve(root)
    served.feed(b"GET /branch/deep HTTP/1.1\r\nHost: h\r\n\r\n")
    assert one(served.take()).body == b"deep pre=['branch', 'deep'] post=[]"
    served.feed(b"PUT /store HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx")
    response = one(served.take(), "PUT")
    assert (response.status, response.body) == (201, b"stored x")
