"""Router: method and path-pattern dispatch, 404 and 405 with Allow."""

from __future__ import annotations

from typing import Any

import pytest

from plait.protocols.http import Request, Response, Router

from ._server_helpers import one, serve


def get(router: Router, target: bytes, method: bytes = b"GET") -> Any:
    return router(Request(method, target))


def test_a_static_route_calls_its_handler_with_the_request() -> None:
    router = Router()
    seen: list[Request] = []

    @router.get("/")
    def index(request: Request) -> str:
        seen.append(request)
        return "index"

    request = Request(b"GET", b"/")
    assert router(request) == "index"
    assert seen == [request]


def test_placeholders_become_keyword_arguments_percent_decoded() -> None:
    router = Router()

    @router.get("/users/{user}/items/{item}")
    def item(request: Request, user: str, item: str) -> str:
        return f"{user}|{item}"

    assert get(router, b"/users/ada/items/a%2Fb%20c") == "ada|a/b c"
    assert get(router, b"/users/ada/items/") .status == 404
    assert get(router, b"/users/ada/items/1/more").status == 404


def test_a_path_placeholder_takes_the_rest_of_the_path() -> None:
    router = Router()

    @router.get("/files/{path:path}")
    def files(request: Request, path: str) -> str:
        return path

    assert get(router, b"/files/a/b/c.txt") == "a/b/c.txt"


def test_no_matching_path_is_a_404() -> None:
    router = Router()
    router.add_route("GET", "/here", lambda request: "here")
    response = get(router, b"/elsewhere")
    assert isinstance(response, Response)
    assert response.status == 404


def test_a_wrong_method_is_a_405_with_allow() -> None:
    router = Router()
    router.add_route(["GET", "POST"], "/thing/{id}", lambda request, id: id)
    response = get(router, b"/thing/1", b"DELETE")
    assert response.status == 405
    assert dict(response.headers)[b"Allow"] == b"GET, HEAD, POST"


@pytest.mark.parametrize("method", ["get", "post", "put", "delete", "patch", "head"])
def test_each_method_decorator_routes_its_method(method: str) -> None:
    router = Router()
    getattr(router, method)("/m")(lambda request: method)
    assert get(router, b"/m", method.upper().encode()) == method
    assert router.routes() == [(method.upper(), "/m")]


def test_route_takes_several_methods() -> None:
    router = Router()

    @router.route(["PUT", "patch"], "/x")
    def both(request: Request) -> str:
        return request.method

    assert get(router, b"/x", b"PUT") == "PUT"
    assert get(router, b"/x", b"PATCH") == "PATCH"


def test_head_falls_back_to_get_unless_routed() -> None:
    router = Router()
    router.add_route("GET", "/a", lambda request: "from get")
    assert get(router, b"/a", b"HEAD") == "from get"
    router.add_route("HEAD", "/a", lambda request: "from head")
    assert get(router, b"/a", b"HEAD") == "from head"


def test_routes_added_first_win_and_the_query_is_ignored() -> None:
    router = Router()
    router.add_route("GET", "/p/{a}", lambda request, a: "first " + a)
    router.add_route("GET", "/p/{b:path}", lambda request, b: "second " + b)
    assert get(router, b"/p/x?q=1") == "first x"
    assert get(router, b"/p/x/y") == "second x/y"


@pytest.mark.parametrize(
    "pattern", ["no-slash", "/a/{b", "/a/{b}/{b}", "/a/{1bad}", "/a/b}"]
)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        Router().add_route("GET", pattern, lambda request: "x")


def test_routing_a_method_twice_is_refused() -> None:
    router = Router()
    router.add_route("GET", "/a/{x}", lambda request, x: x)
    with pytest.raises(ValueError):
        router.add_route("get", "/a/{x}", lambda request, x: x)


def test_a_router_serves_through_a_site_with_coroutine_handlers() -> None:
    router = Router()

    @router.post("/echo/{tag}")
    async def echo(request: Request, tag: str) -> Response:
        return Response(200, tag.encode() + b":" + await request.body())

    served = serve(router)
    served.feed(b"POST /echo/t1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
    assert one(served.take(), "POST").body == b"t1:hi"
