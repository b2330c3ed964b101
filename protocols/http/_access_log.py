"""The access log: one line per answered request on the ``plait.http.access`` logger.

Lines follow the NCSA combined log format (Apache's, nginx's default)::

    127.0.0.1 - - [25/Nov/2026:12:00:00 +0000] "GET /hello HTTP/1.1" 200 13 "-" "curl/8.5"

The server asks ``access_enabled()`` before building a line, so a disabled logger
(the default: nothing configures INFO for it) costs one cached level check per
request. Enable it with ``logging.getLogger("plait.http.access").setLevel(logging.INFO)``
and a handler.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._request import Request

__all__ = ["access_enabled", "access_logger", "format_access", "log_access"]

access_logger = logging.getLogger("plait.http.access")

_INFO = logging.INFO
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def access_enabled() -> bool:
    """Whether an access line would be emitted."""
    return access_logger.isEnabledFor(_INFO)


def _clf_date(http_date: bytes) -> str:
    # "Wed, 25 Nov 2026 12:00:00 GMT" -> "25/Nov/2026:12:00:00 +0000"
    parts = http_date.decode("ascii").split()
    if len(parts) != 6:
        return "-"
    return f"{parts[1]}/{parts[2]}/{parts[3]}:{parts[4]} +0000"


def _quote(value: bytes | None) -> str:
    if not value:
        return "-"
    return value.decode("latin-1").replace("\\", "\\\\").replace('"', '\\"')


def _host(client: object) -> str:
    if isinstance(client, tuple) and client:
        return str(client[0])
    if isinstance(client, str) and client:
        return client
    return "-"


def format_access(request: Request, status: int, size: int, http_date: bytes) -> str:
    """Return the combined-log-format line for one answered request.

    Args:
        request: The request.
        status: The status sent.
        size: Body bytes sent.
        http_date: The response's ``Date`` value (IMF-fixdate).
    """
    headers = request.headers
    method, target = _quote(request.raw_method), _quote(request.target)
    version = _quote(request.http_version)
    referer, agent = _quote(headers.get(b"referer")), _quote(headers.get(b"user-agent"))
    sent = size if size else "-"
    return (
        f'{_host(request.client)} - - [{_clf_date(http_date)}] "{method} {target} '
        f'HTTP/{version}" {status} {sent} "{referer}" "{agent}"'
    )


def log_access(request: Request, status: int, size: int, http_date: bytes) -> None:
    """Emit the access line for one answered request at INFO."""
    access_logger.info("%s", format_access(request, status, size, http_date))
