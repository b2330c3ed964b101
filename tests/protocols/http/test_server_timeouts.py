"""The server's per-connection Deadline on a Clock: one timer, moved lazily."""

from __future__ import annotations

from plait.cluster.task import Clock
from plait.protocols.http.server_timeouts import BODY, HEADER, IDLE, Deadline


def make() -> tuple[Clock, Deadline, list[str]]:
    clock = Clock()
    expired: list[str] = []
    return clock, Deadline(clock, expired.append), expired


def test_a_deadline_expires_with_its_kind_once() -> None:
    clock, deadline, expired = make()
    deadline.set(HEADER, 5)
    clock.advance(4.9)
    assert expired == []
    clock.advance(0.1)
    assert expired == [HEADER]
    assert deadline.kind is None
    clock.advance(100)
    assert expired == [HEADER]


def test_a_later_deadline_keeps_one_timer_and_fires_at_the_new_time() -> None:
    clock, deadline, expired = make()
    deadline.set(HEADER, 5)
    clock.advance(3)
    deadline.set(IDLE, 10)  # now due at 13
    assert len(clock.get_delayed_calls()) == 1
    clock.advance(2)  # the old timer fires early and is scheduled again
    assert expired == []
    clock.advance(7.9)
    assert expired == []
    clock.advance(0.1)
    assert expired == [IDLE]


def test_an_earlier_deadline_moves_the_timer_forward() -> None:
    clock, deadline, expired = make()
    deadline.set(IDLE, 60)
    deadline.set(BODY, 2)
    clock.advance(2)
    assert expired == [BODY]


def test_a_cleared_kind_or_a_stop_means_nothing_expires() -> None:
    clock, deadline, expired = make()
    deadline.set(BODY, 1)
    deadline.kind = None
    clock.advance(5)
    deadline.set(HEADER, 1)
    deadline.stop()
    assert clock.get_delayed_calls() == []
    clock.advance(5)
    assert expired == []
