"""plait.protocols.http: HTTP/1.1.

The sans-IO core lives in ``plait.protocols.http.core`` (``Connection`` and its
events); this package re-exports what applications use: ``Headers``
(case-insensitive, multi-valued), ``Limits``, the protocol errors, and the server:
``Site`` (a protocol factory), ``Request``, ``Response``, ``StreamingResponse``,
``Router``, ``Resource`` and ``WSGIApp`` (see docs/http.md).
"""

from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._headers import Headers
from ._readers import Limits
from ._request import BodyError, Request
from ._resource import NoResource, Resource
from ._response import Response, StreamingResponse, SwitchProtocols
from ._router import Router
from .server import HTTPServerProtocol, Site
from .wsgi import WSGIApp

__all__ = [
    "BodyError",
    "HTTPServerProtocol",
    "Headers",
    "Limits",
    "LocalProtocolError",
    "NoResource",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "Resource",
    "Response",
    "Router",
    "Site",
    "StreamingResponse",
    "SwitchProtocols",
    "WSGIApp",
]
