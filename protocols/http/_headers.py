"""A case-insensitive, multi-valued, order-keeping header list.

Theory of operation: names and values are ``bytes`` on the wire, so they are kept
as ``bytes``; ``str`` arguments are encoded as Latin-1. Three parallel lists hold the
names as given (so a message round-trips with its original case), the lower-cased
names (for lookups) and the values. Lookups scan the short list; for the dozen
headers of a typical request that beats building a dict per message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["Headers", "to_bytes"]


def to_bytes(value: bytes | str) -> bytes:
    """Return ``value`` as bytes, encoding ``str`` as Latin-1."""
    if isinstance(value, str):
        return value.encode("latin-1")
    return bytes(value)


class Headers:
    """Header fields, looked up without regard to case, duplicates kept in order.

    Args:
        fields: ``(name, value)`` pairs, ``bytes`` or ``str``.

    Example:
        >>> h = Headers([("Content-Type", "text/plain"), (b"set-cookie", b"a=1")])
        >>> h.add("Set-Cookie", "b=2")
        >>> h.get("content-type"), h.get_all(b"SET-COOKIE")
        (b'text/plain', [b'a=1', b'b=2'])

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_lower", "_names", "_values")

    def __init__(self, fields: Iterable[tuple[bytes | str, bytes | str]] = ()) -> None:
        self._names: list[bytes] = []
        self._lower: list[bytes] = []
        self._values: list[bytes] = []
        for name, value in fields:
            self.add(name, value)

    @classmethod
    def _from_parsed(
        cls, names: list[bytes], lower: list[bytes], values: list[bytes]
    ) -> Headers:
        """Adopt lists a reader already validated (no copy, no checks)."""
        self = cls.__new__(cls)
        self._names = names
        self._lower = lower
        self._values = values
        return self

    def add(self, name: bytes | str, value: bytes | str) -> None:
        """Append one field, keeping any existing ones of that name."""
        raw = to_bytes(name)
        self._names.append(raw)
        self._lower.append(raw.lower())
        self._values.append(to_bytes(value))

    def set(self, name: bytes | str, value: bytes | str) -> None:
        """Replace every field of that name by one field."""
        self.remove(name)
        self.add(name, value)

    def remove(self, name: bytes | str) -> None:
        """Remove every field of that name (nothing happens if there is none)."""
        key = to_bytes(name).lower()
        keep = [i for i, lower in enumerate(self._lower) if lower != key]
        if len(keep) != len(self._lower):
            self._names = [self._names[i] for i in keep]
            self._lower = [self._lower[i] for i in keep]
            self._values = [self._values[i] for i in keep]

    def get(self, name: bytes | str, default: bytes | None = None) -> bytes | None:
        """Return the first value of that name, or ``default``."""
        key = to_bytes(name).lower()
        for i, lower in enumerate(self._lower):
            if lower == key:
                return self._values[i]
        return default

    def get_all(self, name: bytes | str) -> list[bytes]:
        """Return every value of that name, in order."""
        key = to_bytes(name).lower()
        return [v for lower, v in zip(self._lower, self._values, strict=True) if lower == key]

    def get_list(self, name: bytes | str) -> list[bytes]:
        """Return the comma-separated list elements of every field of that name.

        RFC 9110 section 5.3: fields of one name combine into one comma-separated
        list; empty elements are dropped (section 5.6.1).
        """
        out: list[bytes] = []
        for value in self.get_all(name):
            out.extend(item.strip(b" \t") for item in value.split(b","))
        return [item for item in out if item]

    def lower_names(self) -> list[bytes]:
        """Return the lower-cased names, in order (the list itself: do not modify)."""
        return self._lower

    def raw_items(self) -> list[tuple[bytes, bytes]]:
        """Return ``(name as given, value)`` pairs, in order."""
        return list(zip(self._names, self._values, strict=True))

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        """Iterate over ``(lower-cased name, value)`` pairs, in order."""
        return iter(zip(self._lower, self._values, strict=True))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, bytes | str):
            return False
        return to_bytes(name).lower() in self._lower

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._lower == other._lower and self._values == other._values

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> Headers:
        """Return an independent copy."""
        return Headers._from_parsed(list(self._names), list(self._lower), list(self._values))

    def __repr__(self) -> str:
        return f"Headers({self.raw_items()!r})"
