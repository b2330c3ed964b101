"""plait.worker.demo: the app ``plait run`` serves when given none.

``app`` is a ``Site`` (a zero-argument protocol factory) over a small ``Router``:

- ``GET /``: a short page saying this is the Plait demo, listing the routes;
- ``GET /hello/{name}``: a greeting;
- ``POST /echo``: the request body, sent back;
- ``GET /time``: a JSON document with the server's time;
- ``GET /healthz``: ``ok``, for load balancers and orchestrators.

Try it: ``plait run``, then ``curl http://127.0.0.1:8080/hello/you``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime

from plait.protocols.http import Request, Response, Router, Site

__all__ = ["app", "router"]

router = Router()

_TEXT = [("Content-Type", "text/plain; charset=utf-8")]


@router.get("/")
def index(request: Request) -> Response:
    """The demo's home page: what it is and what it serves."""
    lines = ["This is the Plait demo: an HTTP/1.1 server on Plait's reactor.", "", "Routes:"]
    lines += [f"  {method:6} {pattern}" for method, pattern in router.routes()]
    return Response(200, "\n".join(lines) + "\n", _TEXT)


@router.get("/hello/{name}")
def hello(request: Request, name: str) -> Response:
    """Greet ``name``."""
    return Response(200, f"Hello, {name}!\n", _TEXT)


@router.post("/echo")
async def echo(request: Request) -> Response:
    """Send the request body back, with its content type."""
    body = await request.body()
    content_type = request.headers.get("content-type") or b"application/octet-stream"
    return Response(200, body, [("Content-Type", content_type)])


@router.get("/time")
def now(request: Request) -> Response:
    """The server's time as JSON."""
    stamp = time.time()
    document = {
        "unix": stamp,
        "iso": datetime.fromtimestamp(stamp, UTC).isoformat(),
        "pid": os.getpid(),
    }
    return Response(200, json.dumps(document) + "\n", [("Content-Type", "application/json")])


@router.get("/healthz")
def healthz(request: Request) -> Response:
    """Liveness: ``ok``."""
    return Response(200, "ok\n", _TEXT)


app = Site(router)
"""The demo site: ``plait run`` loads ``plait.worker.demo:app``."""
