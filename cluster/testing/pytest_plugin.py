"""The Plait pytest plugin (registered through the ``pytest11`` entry point).

It gives every test session:

- the ``clock`` fixture: a fresh ``plait.cluster.task.Clock``;
- the ``reactor`` fixture: a fresh native ``plait.cluster.reactor.Reactor``;
- tests that are ``async def`` or return a Deferred: they run to completion on a
  reactor (the ``reactor`` fixture's, else ``get_reactor()``), within a timeout
  (ini option ``plait_timeout``, default 10 seconds, or the marker
  ``@pytest.mark.plait_timeout(seconds)``);
- a check that fails a test when a Deferred with an unhandled failure was
  garbage-collected during it.

Theory of operation: ``pytest_pyfunc_call`` wraps the test function for the length
of the call. The wrapper calls the test; a coroutine becomes a Deferred through
``ensure_deferred``. A Deferred that has fired already (code driven by a ``Clock``)
needs no reactor. Otherwise the wrapper runs a reactor until the Deferred fires: the
test's ``reactor`` fixture when it asked for one, else the process's reactor
(``get_reactor()``, which code under test finds on its own). A timed call cancels
the Deferred and stops the reactor at the timeout. The Deferred's failure is raised
in the test, so pytest reports it with its traceback.

Unhandled failures: ``plait.cluster._defer`` calls each of its
``_unhandled_error_observers`` when a Deferred whose failure nobody handled is
garbage-collected. The plugin adds one observer per session that records what it
sees; ``setup`` clears the record, and after ``teardown`` (fixtures included) the
plugin runs ``gc.collect()`` and fails the test's teardown with the tracebacks of
what was recorded, so the error is reported against the test that leaked it (only
while some failing Deferred is alive: otherwise there is nothing to find). A full
collection per test is costly on a big heap, so after it the plugin calls
``gc.freeze()``: what survived moves to the permanent generation and the next
collection looks only at the objects the next test made. The price: a cycle that
was alive at the end of one test and becomes garbage later is not collected before
the session ends (``gc.unfreeze()`` at ``pytest_unconfigure``).

Everything Plait is imported lazily, inside hooks and fixtures, so that the plugin
loads in any pytest session of an environment where Plait is installed.
"""

from __future__ import annotations

import gc
import inspect
import math
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from plait.cluster.defer import Deferred
    from plait.cluster.failure import Failure
    from plait.cluster.reactor import Reactor
    from plait.cluster.task import Clock

__all__ = ["DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 10.0
"""Seconds an ``async def`` or Deferred-returning test may run by default."""

_TIMEOUT_NAME = "plait_timeout"
# Async tests that another plugin runs are left to it.
_FOREIGN_MARKERS = ("asyncio", "anyio", "trio", "tornado")


class _UnhandledErrors:
    """Records the failures of garbage-collected Deferreds nobody handled."""

    def __init__(self) -> None:
        self.seen: list[Failure] = []
        self.froze = False
        self._observers: list[Callable[[Failure], None]] | None = None

    def __call__(self, failure: Failure) -> None:
        self.seen.append(failure)

    def install(self) -> None:
        from plait.cluster._defer import _unhandled_error_observers

        _unhandled_error_observers.append(self)
        self._observers = _unhandled_error_observers

    def uninstall(self) -> None:
        if self._observers is not None and self in self._observers:
            self._observers.remove(self)
        self._observers = None

    def failing_deferreds_alive(self) -> bool:
        """True while some Deferred holds a failure record (one could still be dropped).

        Failing Deferreds (and every Deferred in debug mode) carry a ``_DebugInfo``;
        when none is alive there is nothing a collection could report, so a session
        that makes no failing Deferred (one that does not use Plait, say) pays
        nothing per test.
        """
        from plait.cluster._defer_errors import _DebugInfo

        return _DebugInfo.live > 0

    def take(self) -> list[Failure]:
        seen, self.seen = self.seen, []
        return seen


_unhandled_key = pytest.StashKey[_UnhandledErrors]()


# ----------------------------------------------------------------- configuration


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        _TIMEOUT_NAME,
        "Seconds an async def or Deferred-returning test may run before it fails "
        f"(default {DEFAULT_TIMEOUT:g}).",
        default=str(DEFAULT_TIMEOUT),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_TIMEOUT_NAME}(seconds): fail this async def or Deferred-returning test "
        "(and stop its reactor) if it has not finished after `seconds`.",
    )
    try:
        _parse_timeout(config.getini(_TIMEOUT_NAME))
    except ValueError as exc:
        raise pytest.UsageError(f"ini option {_TIMEOUT_NAME}: {exc}") from None
    watcher = _UnhandledErrors()
    watcher.install()
    config.stash[_unhandled_key] = watcher


def pytest_unconfigure(config: pytest.Config) -> None:
    watcher = config.stash.get(_unhandled_key, None)
    if watcher is not None:
        watcher.uninstall()
        if watcher.froze:
            gc.unfreeze()


def _parse_timeout(value: object) -> float:
    """A timeout in seconds from an ini string or a marker argument.

    Raises:
        ValueError: not a positive finite number.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"expected a positive, finite number of seconds, got {value!r}")
    return seconds


def _timeout_for(item: pytest.Item) -> float:
    marker = item.get_closest_marker(_TIMEOUT_NAME)
    if marker is None:
        return _parse_timeout(item.config.getini(_TIMEOUT_NAME))
    if len(marker.args) + len(marker.kwargs) != 1 or set(marker.kwargs) - {"seconds"}:
        raise ValueError(
            f"@pytest.mark.{_TIMEOUT_NAME} takes one argument, the number of seconds; "
            f"got args={marker.args!r} kwargs={marker.kwargs!r}"
        )
    value = marker.args[0] if marker.args else marker.kwargs["seconds"]
    return _parse_timeout(value)


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def clock() -> Clock:
    """A fresh ``plait.cluster.task.Clock``: time moves only on ``clock.advance``."""
    from plait.cluster.task import Clock

    return Clock()


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    """A fresh native ``Reactor``, not running; async tests that ask for it run on it."""
    from plait.cluster.reactor import Reactor

    reactor = Reactor()
    yield reactor
    reactor.close()  # releases its selector, waker sockets and thread pool


# -------------------------------------------------------------- the test call


def pytest_runtest_setup(item: pytest.Item) -> None:
    watcher = item.config.stash.get(_unhandled_key, None)
    if watcher is not None:
        # Failures collected before this test started belong to no test; the
        # Deferred module has logged them already.
        watcher.take()
    if item.get_closest_marker(_TIMEOUT_NAME) is not None:
        try:
            _timeout_for(item)
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    if any(pyfuncitem.get_closest_marker(name) for name in _FOREIGN_MARKERS):
        return (yield)
    original = pyfuncitem.obj
    pyfuncitem.obj = _make_runner(original, pyfuncitem)
    try:
        return (yield)
    finally:
        pyfuncitem.obj = original


def _make_runner(test: Callable[..., object], item: pytest.Function) -> Callable[..., object]:
    is_async = inspect.iscoroutinefunction(test)

    def run_test(**kwargs: object) -> object:
        result = test(**kwargs)
        if result is None and not is_async:
            return None
        from plait.cluster.defer import Deferred, ensure_deferred

        if inspect.iscoroutine(result) or isinstance(result, Deferred):
            _run_until_fired(ensure_deferred(result), item)
            return None
        return result  # pytest warns about a test returning a value

    return run_test


def _run_until_fired(deferred: Deferred[Any], item: pytest.Function) -> None:
    """Wait for ``deferred``, running a reactor if it has not fired; raise its failure."""
    from plait.cluster.failure import Failure

    outcome: list[object] = []
    on_fired: list[Callable[[], None]] = []

    def fired(value: object) -> None:
        outcome.append(value)
        for callback in on_fired:
            callback()

    deferred.add_both(fired)  # returns None: the failure is handled here
    if not outcome:
        _run_reactor(_reactor_for(item), deferred, item, outcome, on_fired)
    value = outcome[0]
    if isinstance(value, Failure):
        value.raise_exception()


def _run_reactor(
    reactor: Reactor,
    deferred: Deferred[Any],
    item: pytest.Function,
    outcome: list[object],
    on_fired: list[Callable[[], None]],
) -> None:
    timeout = _timeout_for(item)
    timed_out: list[bool] = []

    def time_out() -> None:
        timed_out.append(True)
        deferred.cancel()  # fires ``fired``, which stops the reactor
        reactor.stop()  # in case a canceller kept it from firing; a no-op otherwise

    def stop_if_running() -> None:
        if reactor.running:
            reactor.stop()

    on_fired.append(stop_if_running)
    timer = reactor.call_later(timeout, time_out)
    try:
        # SIGINT keeps raising KeyboardInterrupt, so that pytest handles ^C.
        reactor.run(install_signal_handlers=False)
    finally:
        if timer.active():
            timer.cancel()
    if timed_out:
        pytest.fail(
            f"{item.nodeid} did not finish within {timeout:g} seconds "
            f"(set with the {_TIMEOUT_NAME} ini option or "
            f"@pytest.mark.{_TIMEOUT_NAME}(seconds)); its Deferred was cancelled "
            "and the reactor stopped",
            pytrace=False,
        )
    if not outcome:
        deferred.cancel()
        pytest.fail(
            f"the reactor stopped before {item.nodeid} finished; its Deferred was cancelled",
            pytrace=False,
        )


def _reactor_for(item: pytest.Function) -> Reactor:
    """The test's ``reactor`` fixture if it asked for one, else the process's reactor."""
    from plait.cluster.reactor import Reactor, get_reactor

    requested = item.funcargs.get("reactor")
    if isinstance(requested, Reactor):
        return requested
    reactor: Reactor = get_reactor()
    return reactor


# ------------------------------------------------------ unhandled Deferred errors


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield  # fixtures are torn down in here; an error there propagates first
    watcher = item.config.stash.get(_unhandled_key, None)
    if watcher is None:
        return
    if watcher.failing_deferreds_alive():
        gc.collect()
        # Move the survivors to the permanent generation, so that the next test's
        # collection scans only the objects that test creates (about 16 ms less per
        # test on a suite of a thousand tests). ``pytest_unconfigure`` undoes it.
        gc.freeze()
        watcher.froze = True
    failures = watcher.take()
    if failures:
        reports = "\n".join(failure.get_traceback() for failure in failures)
        pytest.fail(
            f"{len(failures)} Deferred(s) with an unhandled failure were "
            f"garbage-collected during {item.nodeid}:\n{reports}",
            pytrace=False,
        )
