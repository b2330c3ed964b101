"""Time and tasks: a deterministic ``Clock`` for tests, and scheduling helpers.

``Clock`` is the ``IReactorTime`` every test passes where Plait code takes a clock.
"""

from plait.cluster._task import Clock

__all__ = ["Clock"]
