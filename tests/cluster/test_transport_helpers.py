"""The transports' shared helpers: call_hook and write_buffer_limits."""

from __future__ import annotations

import logging

import pytest

from plait.cluster._transport_helpers import call_hook, write_buffer_limits

_log = logging.getLogger("plait.test.hooks")


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_writing(self) -> None:
        self.calls.append("pause_writing")

    def resume_writing(self) -> None:
        raise RuntimeError("boom")


def test_a_hook_the_target_has_is_called_once() -> None:
    target = _Recorder()
    call_hook(target, "pause_writing", _log, "hook %s failed", "pause_writing")
    assert target.calls == ["pause_writing"]


def test_a_hook_the_target_lacks_is_skipped_without_logging(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="plait.test.hooks"):
        call_hook(object(), "pause_writing", _log, "hook %s failed", "pause_writing")
    assert caplog.records == []


def test_a_hook_that_raises_is_logged_on_the_given_logger_in_the_given_words(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="plait.test.hooks"):
        call_hook(_Recorder(), "resume_writing", _log, "%s: hook %s failed", "t", "resume_writing")
    [record] = caplog.records
    assert record.name == "plait.test.hooks"
    assert record.getMessage() == "t: hook resume_writing failed"
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


def test_write_buffer_limits_default_to_64_kib_and_a_quarter_of_it() -> None:
    assert write_buffer_limits(None, None) == (65536, 16384)


def test_write_buffer_limits_derive_the_missing_mark_from_the_given_one() -> None:
    assert write_buffer_limits(1000, None) == (1000, 250)
    assert write_buffer_limits(None, 100) == (400, 100)
    assert write_buffer_limits(7, 7) == (7, 7)
    assert write_buffer_limits(0, 0) == (0, 0)


@pytest.mark.parametrize(("high", "low"), [(10, 20), (-4, None), (None, -1), (5, -1)])
def test_write_buffer_limits_reject_low_above_high_or_a_negative_mark(
        high: int | None, low: int | None) -> None:
    with pytest.raises(ValueError, match="must be >= low"):
        write_buffer_limits(high, low)
