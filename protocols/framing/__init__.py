"""plait.protocols.framing: line, netstring and length-prefixed framing.

Each framing is a sans-IO core (``LineDecoder``, ``NetstringDecoder``,
``PrefixedDecoder`` and the ``encode_*`` helpers) that turns bytes into frames and
frames into bytes, with no transport, clock or reactor. Malformed or oversize input
raises a ``RemoteFramingError`` before the oversize body is buffered.

The adapters (``LineProtocol``, ``NetstringProtocol``, ``Int16Protocol``,
``Int32Protocol``) put a core on a transport and abort only the connection whose
peer broke the framing.
"""

from ._errors import (
    FrameTooLargeError,
    FramingError,
    LineTooLongError,
    LocalFramingError,
    NetstringError,
    RemoteFramingError,
)
from ._lines import Line, LineDecoder, RawData, encode_line
from ._netstring import NetstringDecoder, encode_netstring
from ._prefixed import PrefixedDecoder, encode_prefixed
from .protocol import (
    Int16Protocol,
    Int32Protocol,
    LineProtocol,
    NetstringProtocol,
    PrefixedProtocol,
)

__all__ = [
    "FrameTooLargeError",
    "FramingError",
    "Int16Protocol",
    "Int32Protocol",
    "Line",
    "LineDecoder",
    "LineProtocol",
    "LineTooLongError",
    "LocalFramingError",
    "NetstringDecoder",
    "NetstringError",
    "NetstringProtocol",
    "PrefixedDecoder",
    "PrefixedProtocol",
    "RawData",
    "RemoteFramingError",
    "encode_line",
    "encode_netstring",
    "encode_prefixed",
]
