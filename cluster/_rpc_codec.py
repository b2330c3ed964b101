"""msgpack values for the bus, with an allow-listed registry of extension types.

Theory of operation: every value that crosses the bus is plain msgpack (nil, bool,
int, float, str, bin, array, map) or one of a few *extension types*, each with a
fixed code that docs/rpc-wire.md writes down:

* code 1, ``datetime.datetime``: the UTF-8 text of ``datetime.isoformat()``;
  naive and aware datetimes both survive the trip.
* code 2, a Deferred: a msgpack int, the reference the sender gave it; the
  receiving node turns it into a remote Deferred (see ``_rpc_node``).
* code 3, an exception: a msgpack array ``[type_name, message, args]``. On the way
  in, a ``type_name`` that was registered rebuilds that class from ``args``;
  anything else becomes a ``RemoteError`` carrying the name and message.
* codes 64-127: types an application registers with ``register_type``.
* code -1, msgpack's own timestamp, is accepted from other implementations and
  arrives as an aware UTC ``datetime``; this codec never sends it.

``str`` stays ``str`` and ``bytes`` stays ``bytes`` (msgpack's str and bin types,
``use_bin_type=True`` / ``raw=False``); invalid UTF-8 in a str is a decoding error.
Tuples travel as arrays and arrive as lists. Map keys must be str or bytes
(``strict_map_key``). Any code not in the registry is refused, and nothing is ever
unpickled: a decoder only builds what was allow-listed.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any

import msgpack

from plait.cluster._rpc_errors import CodecError, RemoteError

__all__ = [
    "EXT_DATETIME",
    "EXT_DEFERRED",
    "EXT_EXCEPTION",
    "FIRST_APPLICATION_CODE",
    "LAST_APPLICATION_CODE",
    "Codec",
]

log = logging.getLogger(__name__)

EXT_DATETIME = 1
EXT_DEFERRED = 2
EXT_EXCEPTION = 3
FIRST_APPLICATION_CODE = 64
LAST_APPLICATION_CODE = 127

#: Exceptions every codec knows by name, so they come back as themselves.
_BUILTIN_EXCEPTIONS: tuple[type[BaseException], ...] = (
    ArithmeticError,
    AssertionError,
    AttributeError,
    ConnectionError,
    Exception,
    FileExistsError,
    FileNotFoundError,
    IndexError,
    KeyError,
    LookupError,
    NotImplementedError,
    OSError,
    OverflowError,
    PermissionError,
    RuntimeError,
    TypeError,
    UnicodeError,
    ValueError,
    ZeroDivisionError,
)


def exception_name(exc: BaseException) -> str:
    """The name an exception travels under: bare for builtins, else ``module.Qualname``."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class Codec:
    """Encode and decode bus values: msgpack plus the registered extension types.

    Args:
        encode_deferred: Called with each Deferred met while encoding; returns the
            int reference that goes on the wire. ``None`` refuses Deferreds.
        decode_reference: Called with each reference met while decoding; returns
            the value (a remote Deferred) to put in its place. ``None`` refuses them.
        deferred_type: The class (or classes) ``encode_deferred`` handles.
    """

    def __init__(
        self,
        *,
        encode_deferred: Callable[[Any], int] | None = None,
        decode_reference: Callable[[int], Any] | None = None,
        deferred_type: type | tuple[type, ...] = (),
    ) -> None:
        self._encode_deferred = encode_deferred
        self._decode_reference = decode_reference
        self._deferred_type = deferred_type
        self._exceptions: dict[str, type[BaseException]] = {}
        self._exception_names: dict[type, str] = {}
        self._types: dict[type, tuple[int, Callable[[Any], bytes]]] = {}
        self._decoders: dict[int, Callable[[bytes], Any]] = {}
        for cls in _BUILTIN_EXCEPTIONS:
            self.register_exception(cls)
        self._packer = msgpack.Packer(default=self._default, use_bin_type=True, datetime=False)
        self._pack = self._packer.pack

    # ------------------------------------------------------------ registry

    def register_exception(self, cls: type[BaseException], name: str | None = None) -> None:
        """Allow ``cls`` to cross the bus as itself.

        Its instances are rebuilt on the receiving side as ``cls(*args)``, so
        ``args`` must be bus values and the constructor must accept them back.

        Args:
            cls: An exception class.
            name: The name it travels under; the default is the bare name for
                builtins and ``module.Qualname`` otherwise.
        """
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"{cls!r} is not an exception class")
        if name is None:
            name = cls.__qualname__ if cls.__module__ == "builtins" else (
                f"{cls.__module__}.{cls.__qualname__}"
            )
        self._exceptions[name] = cls
        self._exception_names[cls] = name

    def register_type(
        self,
        code: int,
        cls: type,
        encode: Callable[[Any], bytes],
        decode: Callable[[bytes], Any],
    ) -> None:
        """Allow instances of ``cls`` to cross the bus as extension ``code``.

        Args:
            code: 64 to 127, the application range; both ends must agree on it.
            cls: Exactly this class is encoded (not its subclasses).
            encode: Turns an instance into bytes.
            decode: Turns those bytes back into a value; an exception it raises
                makes the whole message undecodable (dropped and counted).

        Raises:
            ValueError: ``code`` is outside 64-127 or taken by another class.
        """
        if not FIRST_APPLICATION_CODE <= code <= LAST_APPLICATION_CODE:
            raise ValueError(f"extension code {code} is outside 64-127")
        if code in self._decoders and self._types.get(cls, (None,))[0] != code:
            raise ValueError(f"extension code {code} is already registered")
        self._types[cls] = (code, encode)
        self._decoders[code] = decode

    def exception_type(self, name: str) -> type[BaseException] | None:
        """The class registered under ``name``, if any."""
        return self._exceptions.get(name)

    def exception_name(self, exc: BaseException) -> str:
        """The name ``exc`` travels under: its registered name, else ``exception_name``."""
        return self._exception_names.get(type(exc)) or exception_name(exc)

    # ------------------------------------------------------------ encoding

    def packb(self, value: Any) -> bytes:
        """Encode ``value``.

        Raises:
            CodecError: something in ``value`` has no encoding.
        """
        try:
            return self._pack(value)  # type: ignore[no-any-return]
        except CodecError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise CodecError(f"cannot encode: {exc}") from exc

    def _default(self, obj: Any) -> Any:
        cls = type(obj)
        entry = self._types.get(cls)
        if entry is not None:
            code, encode = entry
            return msgpack.ExtType(code, encode(obj))
        if cls is datetime.datetime:
            return msgpack.ExtType(EXT_DATETIME, obj.isoformat().encode())
        if isinstance(obj, BaseException):
            return msgpack.ExtType(EXT_EXCEPTION, self._pack_exception(obj))
        if self._deferred_type and isinstance(obj, self._deferred_type):
            if self._encode_deferred is None:
                raise CodecError("Deferreds cannot be encoded here")
            return msgpack.ExtType(EXT_DEFERRED, msgpack.packb(self._encode_deferred(obj)))
        raise CodecError(f"cannot encode a {cls.__qualname__}")

    def _pack_exception(self, exc: BaseException) -> bytes:
        if isinstance(exc, RemoteError):
            name, message = exc.remote_type, exc.message
        else:
            name, message = self.exception_name(exc), str(exc)
        packer = msgpack.Packer(default=self._default, use_bin_type=True, datetime=False)
        try:
            return packer.pack([name, message, list(exc.args)])  # type: ignore[no-any-return]
        except (CodecError, TypeError, ValueError, OverflowError):
            # Arguments that have no encoding: keep the name and the message.
            return packer.pack([name, message, [message]])  # type: ignore[no-any-return]

    # ------------------------------------------------------------ decoding

    def unpackb(self, data: bytes) -> Any:
        """Decode one complete value.

        Raises:
            CodecError: ``data`` is not exactly one well-formed value, uses an
                unregistered extension code, has a non-string map key, nests
                too deeply, or has invalid UTF-8 in a str.
        """
        try:
            return msgpack.unpackb(
                data,
                raw=False,
                ext_hook=self._ext_hook,
                strict_map_key=True,
                use_list=True,
                timestamp=3,
            )
        except CodecError:
            raise
        except Exception as exc:  # msgpack raises many types for garbage
            raise CodecError(f"undecodable: {type(exc).__name__}: {exc}") from exc

    def _ext_hook(self, code: int, data: bytes) -> Any:
        if code == EXT_DATETIME:
            return datetime.datetime.fromisoformat(data.decode())
        if code == EXT_DEFERRED:
            if self._decode_reference is None:
                raise CodecError("Deferred references are not accepted here")
            ref = msgpack.unpackb(data)
            if type(ref) is not int:
                raise CodecError("a Deferred reference must be an int")
            return self._decode_reference(ref)
        if code == EXT_EXCEPTION:
            return self._unpack_exception(data)
        decode = self._decoders.get(code)
        if decode is None:
            raise CodecError(f"extension code {code} is not registered")
        return decode(data)

    def _unpack_exception(self, data: bytes) -> BaseException:
        fields = msgpack.unpackb(
            data, raw=False, ext_hook=self._ext_hook, strict_map_key=True, use_list=True
        )
        if not (
            isinstance(fields, list)
            and len(fields) == 3
            and isinstance(fields[0], str)
            and isinstance(fields[1], str)
            and isinstance(fields[2], list)
        ):
            raise CodecError("an exception must be [type_name, message, args]")
        name, message, args = fields
        cls = self._exceptions.get(name)
        if cls is not None:
            try:
                return cls(*args)
            except Exception:  # a constructor that refuses its own args
                log.debug("cannot rebuild %s from %r", name, args, exc_info=True)
        return RemoteError(name, message)
