"""permessage-deflate (RFC 7692): negotiation parameters and the per-message codec.

Theory of operation. Negotiation (section 7.1) is a list of parameters on the
``Sec-WebSocket-Extensions`` header; ``_handshake.py`` parses the header and hands
each ``permessage-deflate`` offer or response here as ``[(name, value or None)]``.

- ``server_no_context_takeover`` / ``client_no_context_takeover`` (7.1.1): that
  side resets its compressor after every message. The side that *decompresses*
  need not care (a stream that does not refer back decodes either way), so only
  the compressing side acts on it.
- ``server_max_window_bits`` / ``client_max_window_bits`` (7.1.2): the largest
  LZ77 window that side's compressor may use, 8 to 15. We always decompress with
  a 15-bit window, which decodes any smaller one. zlib cannot compress raw deflate
  with an 8-bit window (it silently uses 9), so a negotiation that would make
  us compress with 8 bits is declined (server) or failed (client).

Each message is compressed as one deflate stream piece ended by a sync flush
whose trailing ``00 00 FF FF`` is removed (7.2.1); the receiver appends it back
(7.2.2). A decompressed message larger than the limit is refused as it grows
(code 1009), never inflated whole first; corrupt data is code 1007.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from ._errors import RemoteProtocolError

__all__ = [
    "EXTENSION_NAME",
    "DeflateCodec",
    "DeflateParams",
    "accept_offer",
    "client_offer",
    "parse_response",
]

EXTENSION_NAME = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"
_PARAMS = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)

Params = Sequence[tuple[str, str | None]]


class NegotiationError(ValueError):
    """A permessage-deflate offer or response that cannot be accepted."""


class DeflateParams:
    """What was agreed, from one side's point of view.

    Args:
        compress_bits: Our compressor's window bits (9-15).
        reset_compressor: Start a fresh compressor for every message we send.
    """

    __slots__ = ("compress_bits", "reset_compressor")

    def __init__(self, *, compress_bits: int = 15, reset_compressor: bool = False) -> None:
        self.compress_bits = compress_bits
        self.reset_compressor = reset_compressor

    def __repr__(self) -> str:
        return (
            f"DeflateParams(compress_bits={self.compress_bits}, "
            f"reset_compressor={self.reset_compressor})"
        )


def _window_bits(value: str | None, name: str) -> int:
    # RFC 7692 section 7.1.2.1: 1*DIGIT, a decimal integer from 8 to 15, no leading zero.
    if value is None or not value.isdigit() or value.startswith("0"):
        raise NegotiationError(f"{name} needs a value from 8 to 15, not {value!r}")
    bits = int(value)
    if not 8 <= bits <= 15:
        raise NegotiationError(f"{name} needs a value from 8 to 15, not {value!r}")
    return bits


def _as_dict(params: Params) -> dict[str, str | None]:
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name not in _PARAMS:
            raise NegotiationError(f"unknown permessage-deflate parameter {name!r}")  # 7.1
        if name in seen:
            raise NegotiationError(f"duplicate permessage-deflate parameter {name!r}")  # 7.1
        if name.endswith("no_context_takeover") and value is not None:
            raise NegotiationError(f"{name} takes no value")  # 7.1.1
        seen[name] = value
    return seen


def client_offer(*, client_no_context_takeover: bool = False) -> str:
    """The offer a client sends: we accept any server window, and say we could
    honour ``client_max_window_bits`` (section 7.1.2.2)."""
    offer = f"{EXTENSION_NAME}; client_max_window_bits"
    if client_no_context_takeover:
        offer += "; client_no_context_takeover"
    return offer


def accept_offer(
    params: Params, *, server_no_context_takeover: bool = False
) -> tuple[str, DeflateParams]:
    """As a server, accept one offer: the response parameters and our side's settings.

    Args:
        params: The offer's parameters.
        server_no_context_takeover: Reset our compressor after every message even
            if the client did not ask.

    Raises:
        NegotiationError: the offer is malformed or asks what we cannot do; the
            server declines it (section 5: it may try the next offer).
    """
    offer = _as_dict(params)
    response = [EXTENSION_NAME]
    reset = server_no_context_takeover or "server_no_context_takeover" in offer
    if reset:
        response.append("server_no_context_takeover")
    if "client_no_context_takeover" in offer:
        response.append("client_no_context_takeover")
    bits = 15
    if "server_max_window_bits" in offer:
        bits = _window_bits(offer["server_max_window_bits"], "server_max_window_bits")
        if bits == 8:
            raise NegotiationError("zlib cannot compress with an 8-bit window")
        response.append(f"server_max_window_bits={bits}")
    if "client_max_window_bits" in offer and offer["client_max_window_bits"] is not None:
        _window_bits(offer["client_max_window_bits"], "client_max_window_bits")
    return "; ".join(response), DeflateParams(compress_bits=bits, reset_compressor=reset)


def parse_response(
    params: Params, *, client_no_context_takeover: bool = False
) -> DeflateParams:
    """As a client, check the server's response to ``client_offer``; our settings.

    Raises:
        NegotiationError: the response breaks section 7.1; the client fails the
            connection (section 7.1: "the client MUST Fail the WebSocket Connection").
    """
    response = _as_dict(params)
    if "server_max_window_bits" in response:
        _window_bits(response["server_max_window_bits"], "server_max_window_bits")
    bits = 15
    if "client_max_window_bits" in response:
        bits = _window_bits(response["client_max_window_bits"], "client_max_window_bits")
        if bits == 8:
            raise NegotiationError("zlib cannot compress with an 8-bit window")
    reset = client_no_context_takeover or "client_no_context_takeover" in response
    return DeflateParams(compress_bits=bits, reset_compressor=reset)


class DeflateCodec:
    """Compress outgoing messages and decompress incoming ones (RFC 7692 section 7.2).

    Args:
        params: This side's negotiated settings.
    """

    def __init__(self, params: DeflateParams) -> None:
        self.params = params
        self._compressor: zlib._Compress | None = None
        self._decompressor = zlib.decompressobj(-15)

    def compress(self, data: bytes) -> bytes:
        """One message's compressed payload (section 7.2.1)."""
        compressor = self._compressor
        if compressor is None or self.params.reset_compressor:
            compressor = self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -self.params.compress_bits
            )
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if out.endswith(_TAIL):
            out = out[:-4]
        return out

    def decompress(self, data: bytes, limit: int, *, final: bool) -> bytes:
        """Decompress one fragment of a compressed message (section 7.2.2).

        Args:
            data: The fragment's payload.
            limit: The most bytes of output allowed for this fragment.
            final: This is the message's last fragment (the tail is appended).

        Raises:
            RemoteProtocolError: the output exceeds ``limit`` (1009) or the data is
                not valid deflate (1007).
        """
        if final:
            data += _TAIL
        d = self._decompressor
        try:
            out = d.decompress(data, limit + 1)
        except zlib.error as exc:
            raise RemoteProtocolError(f"invalid compressed data: {exc}", 1007) from exc
        if len(out) > limit or d.unconsumed_tail:
            raise RemoteProtocolError("a compressed message inflates past the size limit", 1009)
        return out
