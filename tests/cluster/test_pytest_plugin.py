"""Tests for the Plait pytest plugin, run as inner pytest sessions with ``pytester``.

The inner sessions load the plugin through its ``pytest11`` entry point, as any
project with Plait installed does. Several inner tests share one session to keep
this file fast; each outcome is checked by name.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

_INNER_ARGS = ("-p", "no:xdist", "-p", "no:randomly", "-p", "no:cacheprovider", "-rA")


def _outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Map each inner test name to PASSED/FAILED/ERROR from the ``-rA`` summary."""
    found: dict[str, str] = {}
    for line in result.outlines:
        for word in ("PASSED", "FAILED", "ERROR"):
            prefix = f"{word} "
            if line.startswith(prefix) and "::" in line:
                name = line[len(prefix) :].split(" - ")[0].split("::")[-1]
                # An error at teardown comes after the pass of the call.
                found[name] = word if found.get(name) != "ERROR" else "ERROR"
    return found


def test_clock_fixture_is_a_fresh_clock_for_each_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from zope.interface.verify import verifyObject
        from plait.cluster.interfaces import IReactorTime
        from plait.cluster.task import Clock

        seen = []

        def test_first(clock):
            assert isinstance(clock, Clock) and verifyObject(IReactorTime, clock)
            clock.advance(5)
            seen.append(clock)

        def test_second(clock):
            assert clock.seconds() == 0
            assert clock is not seen[0]
        """
    )
    result = pytester.runpytest(*_INNER_ARGS)
    result.assert_outcomes(passed=2)


def test_reactor_fixture_is_a_fresh_stopped_reactor_closed_after_the_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from plait.cluster.reactor import Reactor, get_reactor

        seen = []

        def test_first(reactor):
            assert isinstance(reactor, Reactor)
            assert reactor is not get_reactor()
            assert not reactor.running
            reactor.call_later(0, reactor.stop)
            reactor.run(install_signal_handlers=False)
            seen.append(reactor)

        def test_second(reactor):
            assert reactor is not seen[0]
            with pytest.raises(RuntimeError, match="closed"):
                seen[0].run()
        """
    )
    result = pytester.runpytest(*_INNER_ARGS)
    result.assert_outcomes(passed=2)


def test_async_and_deferred_tests_run_to_completion(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from plait.cluster.defer import Deferred, fail, succeed
        from plait.cluster.reactor import get_reactor
        from plait.cluster.task import defer_later

        async def test_async_on_the_reactor_fixture(reactor):
            start = reactor.seconds()
            assert await defer_later(reactor, 0.01, lambda: "late") == "late"
            assert reactor.seconds() >= start + 0.01

        async def test_async_on_the_process_reactor():
            assert await defer_later(get_reactor(), 0.01, lambda: 7) == 7

        async def test_async_driven_by_the_clock_needs_no_reactor(clock):
            d = defer_later(clock, 5, lambda: "done")
            clock.advance(5)
            assert await d == "done"

        async def test_async_failing_assertion():
            await defer_later(get_reactor(), 0)
            assert 1 + 1 == 3, "arithmetic is broken"

        async def test_async_raising():
            await defer_later(get_reactor(), 0)
            raise KeyError("from the coroutine")

        def test_returns_a_deferred_that_fires(reactor):
            return defer_later(reactor, 0.01, lambda: None)

        def test_returns_a_deferred_that_fails(reactor):
            return defer_later(reactor, 0.01, lambda: 1 / 0)

        def test_returns_a_fired_deferred():
            return succeed(None)

        def test_returns_a_failed_deferred():
            return fail(OSError("already failed"))

        def test_plain_test_still_works():
            assert True
        """
    )
    result = pytester.runpytest(*_INNER_ARGS)
    assert _outcomes(result) == {
        "test_async_on_the_reactor_fixture": "PASSED",
        "test_async_on_the_process_reactor": "PASSED",
        "test_async_driven_by_the_clock_needs_no_reactor": "PASSED",
        "test_async_failing_assertion": "FAILED",
        "test_async_raising": "FAILED",
        "test_returns_a_deferred_that_fires": "PASSED",
        "test_returns_a_deferred_that_fails": "FAILED",
        "test_returns_a_fired_deferred": "PASSED",
        "test_returns_a_failed_deferred": "FAILED",
        "test_plain_test_still_works": "PASSED",
    }
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: arithmetic is broken*",
            "*KeyError: 'from the coroutine'*",
            "*ZeroDivisionError*",
            "*OSError: already failed*",
        ]
    )


def test_a_test_past_its_timeout_fails_and_its_deferred_is_cancelled(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest
        from plait.cluster.defer import CancelledError, Deferred
        from plait.cluster.task import defer_later

        cancelled = []

        @pytest.mark.plait_timeout(0.05)
        async def test_hangs(reactor):
            try:
                await Deferred()
            except CancelledError:
                cancelled.append(True)
                raise

        @pytest.mark.plait_timeout(seconds=0.05)
        def test_returns_a_deferred_that_never_fires():
            return Deferred()

        async def test_next_test_runs_normally(reactor):
            assert cancelled == [True]
            assert await defer_later(reactor, 0, lambda: 1) == 1
        """
    )
    result = pytester.runpytest(*_INNER_ARGS)
    assert _outcomes(result) == {
        "test_hangs": "FAILED",
        "test_returns_a_deferred_that_never_fires": "FAILED",
        "test_next_test_runs_normally": "PASSED",
    }
    result.stdout.fnmatch_lines(
        ["*test_hangs did not finish within 0.05 seconds*its Deferred was cancelled*"]
    )


def test_the_plait_timeout_ini_option_sets_the_default(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nplait_timeout = 0.05\n")
    pytester.makepyfile(
        """
        from plait.cluster.defer import Deferred

        async def test_hangs():
            await Deferred()
        """
    )
    result = pytester.runpytest(*_INNER_ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*did not finish within 0.05 seconds*"])


def test_a_reactor_stopped_before_the_test_finished_fails_the_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        from plait.cluster.defer import Deferred

        async def test_stops_its_own_reactor(reactor):
            reactor.call_later(0, reactor.stop)
            await Deferred()
        """
    )
    result = pytester.runpytest(*_INNER_ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the reactor stopped before*finished*"])


@pytest.mark.parametrize("value", ["-1", "0", "soon", "nan", "inf"])
def test_a_bad_plait_timeout_ini_value_is_a_usage_error(
    pytester: pytest.Pytester, value: str
) -> None:
    pytester.makeini(f"[pytest]\nplait_timeout = {value}\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest(*_INNER_ARGS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini option plait_timeout: expected a*number of seconds*"])


def test_a_bad_plait_timeout_marker_is_an_error_of_that_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.plait_timeout(-1)
        async def test_negative():
            pass

        @pytest.mark.plait_timeout("soon")
        def test_not_a_number():
            pass

        @pytest.mark.plait_timeout
        async def test_no_argument():
            pass

        @pytest.mark.plait_timeout(1, 2)
        async def test_two_arguments():
            pass

        @pytest.mark.plait_timeout(True)
        async def test_a_bool():
            pass

        @pytest.mark.plait_timeout(2.5)
        async def test_good():
            pass
        """
    )
    result = pytester.runpytest(*_INNER_ARGS)
    assert _outcomes(result) == {
        "test_negative": "ERROR",
        "test_not_a_number": "ERROR",
        "test_no_argument": "ERROR",
        "test_two_arguments": "ERROR",
        "test_a_bool": "ERROR",
        "test_good": "PASSED",
    }
    result.stdout.fnmatch_lines(
        ["*expected a positive, finite number of seconds, got -1*", "*takes one argument*"]
    )


def test_the_plait_timeout_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers", *_INNER_ARGS)
    result.stdout.fnmatch_lines(["@pytest.mark.plait_timeout(seconds):*"])


def test_async_tests_marked_for_another_plugin_are_left_to_it(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    asyncio: run by pytest-asyncio\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_for_asyncio():
            pass
        """
    )
    result = pytester.runpytest(*_INNER_ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])


def test_an_unhandled_failure_collected_during_a_test_fails_that_test(
    pytester: pytest.Pytester,
) -> None:
    # In a subprocess: the outer session's own observer must not see the inner leak.
    pytester.makepyfile(
        """
        from plait.cluster.defer import Deferred, fail

        class Cycle:
            pass

        def test_passes_before():
            pass

        def test_leaks_a_failure():
            fail(ValueError("nobody handled me"))

        def test_leaks_a_failure_held_in_a_cycle():
            holder = Cycle()
            holder.me = holder
            holder.d = fail(LookupError("in a cycle"))

        def test_handles_its_failure():
            fail(ValueError("handled")).add_errback(lambda f: None)

        def test_passes_after():
            pass
        """
    )
    result = pytester.runpytest_subprocess(*_INNER_ARGS)
    assert _outcomes(result) == {
        "test_passes_before": "PASSED",
        "test_leaks_a_failure": "ERROR",
        "test_leaks_a_failure_held_in_a_cycle": "ERROR",
        "test_handles_its_failure": "PASSED",
        "test_passes_after": "PASSED",
    }
    result.stdout.fnmatch_lines(
        [
            "*garbage-collected during*test_leaks_a_failure*",
            "*ValueError: nobody handled me*",
            "*garbage-collected during*test_leaks_a_failure_held_in_a_cycle*",
            "*LookupError: in a cycle*",
        ]
    )


def test_a_session_without_failing_deferreds_pays_no_garbage_collection(
    pytester: pytest.Pytester,
) -> None:
    """Installed Plait must not slow down or pin memory in suites that do not fail Deferreds.

    The per-test collection (and its ``gc.freeze``) only runs while a failing Deferred
    is alive; a leak is still caught in the same session afterwards.
    """
    pytester.makepyfile(
        """
        import gc

        from plait.cluster.defer import fail, succeed

        def test_plain():
            succeed(1).add_callback(lambda r: r)

        def test_nothing_was_frozen():
            assert gc.get_freeze_count() == 0

        def test_leaks_a_failure():
            fail(ValueError("still caught"))
        """
    )
    result = pytester.runpytest_subprocess(*_INNER_ARGS)
    assert _outcomes(result) == {
        "test_plain": "PASSED",
        "test_nothing_was_frozen": "PASSED",
        "test_leaks_a_failure": "ERROR",
    }
