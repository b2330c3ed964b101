"""plait.protocols.http: HTTP/1.1.

What exists so far is the sans-IO core, in ``plait.protocols.http.core``
(``Connection`` and its events), and the pieces the application-facing API will
share with it: ``Headers`` (case-insensitive, multi-valued), ``Limits`` and the
protocol errors. The server and client adapters (``Site``, ``Agent``) and the
application-facing ``Request``/``Response`` of DESIGN.md are built on the core.
"""

from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._headers import Headers
from ._readers import Limits

__all__ = [
    "Headers",
    "Limits",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
]
