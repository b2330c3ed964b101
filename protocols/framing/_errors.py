"""The framing family's errors, h11 style.

``RemoteFramingError`` and its subclasses mean the peer sent bytes that cannot be
framed (the adapter aborts that connection, and only that one);
``LocalFramingError`` means this side asked to send something the framing cannot
carry (a line that contains the delimiter, a frame too big for its prefix).
"""

from __future__ import annotations

__all__ = [
    "FrameTooLargeError",
    "FramingError",
    "LineTooLongError",
    "LocalFramingError",
    "NetstringError",
    "RemoteFramingError",
]


class FramingError(Exception):
    """Base class of every framing error."""


class RemoteFramingError(FramingError):
    """The peer sent bytes that break the framing; the stream cannot go on."""


class LineTooLongError(RemoteFramingError):
    """A line (or undelimited data in line mode) exceeds ``max_length``."""


class NetstringError(RemoteFramingError):
    """A malformed or oversize netstring."""


class FrameTooLargeError(RemoteFramingError):
    """A length prefix announces a frame bigger than ``max_frame``."""


class LocalFramingError(FramingError, ValueError):
    """This side tried to send something the framing cannot carry."""
