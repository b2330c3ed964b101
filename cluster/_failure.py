"""Failure: an exception caught as a value, with its traceback.

Theory of operation: a ``Failure`` wraps one exception instance together with the
traceback it had when it was caught, so that an error can travel down a Deferred's
errback chain (or across threads) and still be re-raised or printed with the frames
where it happened. Unlike Twisted's Failure it does not "clean" itself into strings:
Python 3 exceptions carry ``__traceback__`` already, and keeping the real traceback
is what lets ``inline_callbacks`` and coroutines show their own frames. The cost is
that the frames' locals stay alive as long as the Failure does.
"""

from __future__ import annotations

import sys
import traceback
from typing import IO, Any

__all__ = ["Failure", "NoCurrentExceptionError"]

_ExcType = type[BaseException]

#: Failure, Deferred and all their subclasses (each registers itself), so that the
#: Deferred runner can ask ``type(result) in _SPECIAL_TYPES`` once per callback
#: instead of two ``isinstance`` calls that are slow when they miss.
_SPECIAL_TYPES: set[type] = set()


class NoCurrentExceptionError(Exception):
    """``Failure()`` was created with no exception given and none being handled.

    .. versionadded:: 0.1
    """


class Failure:
    """An exception instance and its traceback, kept as a value.

    ``Failure()`` inside an ``except`` block captures the exception being handled;
    ``Failure(exc)`` wraps a given exception instance.

    Example:
        >>> try:
        ...     1 / 0
        ... except ZeroDivisionError:
        ...     f = Failure()
        >>> f.check(ArithmeticError) is ArithmeticError
        True
        >>> f.get_error_message()
        'division by zero'

    Args:
        exc_value: The exception; ``None`` means the one being handled now.
        exc_type: Its type (defaults to ``type(exc_value)``).
        exc_tb: Its traceback (defaults to ``exc_value.__traceback__``).

    Raises:
        NoCurrentExceptionError: ``exc_value`` is ``None`` and no exception is being
            handled.
        TypeError: ``exc_value`` is not an exception instance.

    .. versionadded:: 0.1
    """

    __slots__ = ("tb", "type", "value", "__weakref__")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _SPECIAL_TYPES.add(cls)

    value: BaseException
    type: _ExcType
    tb: Any  # types.TracebackType | None

    def __init__(
        self,
        exc_value: BaseException | None = None,
        exc_type: _ExcType | None = None,
        exc_tb: Any = None,
    ) -> None:
        if exc_value is None:
            exc_value = sys.exception()
            if exc_value is None:
                raise NoCurrentExceptionError(
                    "Failure() needs an exception: none was given and none is being handled"
                )
        elif not isinstance(exc_value, BaseException):
            raise TypeError(
                f"Failure() takes an exception instance, not {type(exc_value).__name__}"
            )
        self.value = exc_value
        self.type = exc_type if exc_type is not None else type(exc_value)
        self.tb = exc_tb if exc_tb is not None else exc_value.__traceback__

    def check(self, *error_types: _ExcType | str) -> _ExcType | str | None:
        """Return the first of ``error_types`` that this failure is an instance of.

        Args:
            *error_types: Exception classes, or fully qualified class names
                (``"builtins.KeyError"``), matched against the whole MRO.

        Returns:
            The matching entry of ``error_types``, or ``None`` if none matches.
        """
        for error_type in error_types:
            if isinstance(error_type, str):
                for klass in self.type.__mro__:
                    if f"{klass.__module__}.{klass.__qualname__}" == error_type:
                        return error_type
            elif issubclass(self.type, error_type):
                return error_type
        return None

    def trap(self, *error_types: _ExcType | str) -> _ExcType | str:
        """Return the matching type, or re-raise the failure's exception.

        Meant for errbacks: ``failure.trap(KeyError)`` lets a ``KeyError`` be handled
        by the rest of the errback and passes any other error down the chain.

        Raises:
            BaseException: the wrapped exception, when no type matches.
        """
        matched = self.check(*error_types)
        if matched is None:
            self.raise_exception()
        assert matched is not None
        return matched

    def raise_exception(self) -> None:
        """Raise the wrapped exception with its original traceback."""
        raise self.value.with_traceback(self.tb)

    def get_error_message(self) -> str:
        """The exception's message, or its ``repr`` when the message is empty."""
        message = str(self.value)
        return message if message else repr(self.value)

    def get_traceback(self) -> str:
        """The traceback as Python would print it, ending with the exception line."""
        return "".join(traceback.format_exception(self.type, self.value, self.tb))

    def print_traceback(self, file: IO[str] | None = None) -> None:
        """Write ``get_traceback()`` to ``file`` (default: ``sys.stderr``)."""
        (file if file is not None else sys.stderr).write(self.get_traceback())

    def __repr__(self) -> str:
        return f"<Failure {self.type.__qualname__}: {self.get_error_message()}>"

    __str__ = __repr__


_SPECIAL_TYPES.add(Failure)
