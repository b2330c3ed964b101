"""plait.protocols.framing: line, netstring and length-prefixed framing.

Each framing is a sans-IO core (``LineDecoder``, ``NetstringDecoder``,
``PrefixedDecoder`` and the ``encode_*`` helpers) that turns bytes into frames and
frames into bytes, with no transport, clock or reactor. Malformed or oversize input
raises a ``RemoteFramingError`` before the oversize body is buffered.
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

__all__ = [
    "FrameTooLargeError",
    "FramingError",
    "Line",
    "LineDecoder",
    "LineTooLongError",
    "LocalFramingError",
    "NetstringDecoder",
    "NetstringError",
    "PrefixedDecoder",
    "RawData",
    "RemoteFramingError",
    "encode_line",
    "encode_netstring",
    "encode_prefixed",
]
