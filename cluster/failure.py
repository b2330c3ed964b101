"""Failure: an exception kept as a value, with its traceback (public names)."""

from plait.cluster._failure import Failure, NoCurrentExceptionError

__all__ = ["Failure", "NoCurrentExceptionError"]
