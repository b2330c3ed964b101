"""spawn_process on the native reactor, with real children (``sys.executable -c``).

Every wait is bounded (``WAIT`` seconds) and every child still running at the end of
a test is killed and reaped in the fixture's teardown. The tests that exercise
reaping run twice: once with pidfds and once with the SIGCHLD fallback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from plait.cluster import _process
from plait.cluster.interfaces import IConsumer, IProcessTransport, IPullProducer, IPushProducer
from plait.cluster.protocol import ProcessProtocol
from plait.cluster.reactor import Reactor

WAIT = 10.0
PY = sys.executable


class Recorder(ProcessProtocol):
    """Records every callback in order, and the bytes per descriptor."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.data: dict[int, bytes] = {}
        self.lost: dict[int, BaseException | None] = {}
        self.exited = False
        self.flow: list[str] = []

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.events.append("connection_made")

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.data[fd] = self.data.get(fd, b"") + data

    def pipe_connection_lost(self, fd: int, exc: BaseException | None) -> None:
        assert fd not in self.lost, f"fd {fd} reported lost twice"
        self.lost[fd] = exc
        self.events.append(("pipe_connection_lost", fd))

    def process_exited(self) -> None:
        assert not self.exited, "process_exited called twice"
        self.exited = True
        self.events.append("process_exited")

    def pause_writing(self) -> None:
        self.flow.append("pause")

    def resume_writing(self) -> None:
        self.flow.append("resume")


class Spawner:
    """Runs a reactor for the tests, and cleans up the children they start."""

    def __init__(self) -> None:
        self.reactor = Reactor()
        self.transports: list[Any] = []

    def spawn(self, code: str, proto: Any = None, **kwargs: Any) -> tuple[Any, Recorder]:
        proto = Recorder() if proto is None else proto
        argv = [PY, "-c", textwrap.dedent(code)]
        transport = self.reactor.spawn_process(proto, argv, **kwargs)
        self.transports.append(transport)
        return transport, proto

    def run_until(self, done: Callable[[], bool], what: str = "the children to exit") -> None:
        """Run the reactor until ``done()``, failing the test after ``WAIT`` seconds."""
        timed_out = []

        def check() -> None:
            if done():
                self.reactor.stop()
            else:
                self.reactor.call_later(0.005, check)

        def give_up() -> None:
            timed_out.append(True)
            self.reactor.stop()

        self.reactor.call_soon(check)
        guard = self.reactor.call_later(WAIT, give_up)
        self.reactor.run(install_signal_handlers=False)
        if guard.active():
            guard.cancel()
        if timed_out:
            pytest.fail(f"timed out waiting for {what}")

    def wait_exited(self, *protos: Recorder) -> None:
        self.run_until(lambda: all(p.exited for p in protos))

    def cleanup(self) -> None:
        for transport in self.transports:
            if transport.get_returncode() is None:
                try:
                    os.kill(transport.get_pid(), signal.SIGKILL)
                    os.waitpid(transport.get_pid(), 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
        self.reactor.close()


@pytest.fixture(params=["pidfd", "sigchld"])
def spawner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Spawner]:
    """A Spawner, once with pidfd reaping and once with the SIGCHLD fallback."""
    if request.param == "pidfd" and not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd_open here")
    monkeypatch.setattr(_process, "_use_pidfd", request.param == "pidfd")
    s = Spawner()
    yield s
    s.cleanup()


@pytest.fixture
def one(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spawner]:
    """A Spawner with the platform's default reaping, for tests of other things."""
    s = Spawner()
    yield s
    s.cleanup()


ECHO_UPPER = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read().upper())"
COPY = """
    import os
    while chunk := os.read(0, 65536):
        os.write(1, chunk)
"""
WAIT_FOR_STDIN_EOF = "import sys; sys.stdin.read()"


# ---------------------------------------------------------------- the basics


def test_bytes_go_through_stdin_and_come_back_on_stdout(spawner: Spawner) -> None:
    t, p = spawner.spawn(ECHO_UPPER)
    stdin = t.get_pipe_transport(0)
    stdin.write(b"hello ")
    stdin.writelines([b"wor", b"ld"])
    stdin.close()
    spawner.wait_exited(p)
    assert p.data == {1: b"HELLO WORLD"}
    assert t.get_returncode() == 0


def test_callbacks_come_in_order_with_process_exited_last_and_once(spawner: Spawner) -> None:
    t, p = spawner.spawn("import sys; sys.stdout.write('x')")
    spawner.wait_exited(p)
    assert p.events[0] == "connection_made"
    assert p.events[-1] == "process_exited"
    assert sorted(e[1] for e in p.events[1:-1]) == [0, 1, 2]
    assert p.lost == {0: None, 1: None, 2: None}
    assert t.is_closing()


def test_stderr_arrives_apart_from_stdout(one: Spawner) -> None:
    code = "import sys; sys.stdout.write('out'); sys.stdout.flush(); sys.stderr.write('err')"
    _, p = one.spawn(code)
    one.wait_exited(p)
    assert p.data == {1: b"out", 2: b"err"}


@pytest.mark.parametrize("status", [0, 1, 7, 255])
def test_the_exit_status_is_the_returncode(one: Spawner, status: int) -> None:
    t, p = one.spawn(f"import sys; sys.exit({status})")
    assert t.get_returncode() is None
    one.wait_exited(p)
    assert t.get_returncode() == status


def test_a_child_killed_by_a_signal_has_a_negative_returncode(spawner: Spawner) -> None:
    t, p = spawner.spawn(WAIT_FOR_STDIN_EOF)
    t.kill()
    spawner.wait_exited(p)
    assert t.get_returncode() == -signal.SIGKILL


def test_terminate_sends_sigterm(one: Spawner) -> None:
    t, p = one.spawn(WAIT_FOR_STDIN_EOF)
    t.terminate()
    one.wait_exited(p)
    assert t.get_returncode() == -signal.SIGTERM


def test_send_signal_delivers_a_signal_the_child_handles(one: Spawner) -> None:
    code = """
        import signal, sys, os
        signal.signal(signal.SIGUSR1, lambda *a: sys.exit(42))
        os.write(1, b"ready")
        signal.pause()
    """
    t, p = one.spawn(code)
    one.run_until(lambda: p.data.get(1) == b"ready", "the child to be ready")
    t.send_signal(signal.SIGUSR1)
    one.wait_exited(p)
    assert t.get_returncode() == 42


def test_signals_after_the_child_was_reaped_do_nothing(one: Spawner) -> None:
    t, p = one.spawn("pass")
    one.wait_exited(p)
    t.kill()
    t.terminate()
    t.send_signal(signal.SIGUSR1)
    assert t.get_returncode() == 0


@pytest.mark.parametrize("bad", [-1, 100_000])
def test_send_signal_refuses_an_invalid_signal_number(one: Spawner, bad: int) -> None:
    t, _ = one.spawn(WAIT_FOR_STDIN_EOF)
    with pytest.raises(ValueError, match="not a valid signal"):
        t.send_signal(bad)


def test_the_child_sees_end_of_file_when_stdin_is_closed(one: Spawner) -> None:
    t, p = one.spawn("import sys; print(len(sys.stdin.buffer.read()))")
    t.get_pipe_transport(0).write(b"12345")
    t.get_pipe_transport(0).write_eof()
    one.wait_exited(p)
    assert p.data[1].strip() == b"5"
    assert t.get_pipe_transport(0).can_write_eof()


def test_connection_made_may_write_close_and_pause_before_the_pipes_are_watched(
    spawner: Spawner,
) -> None:
    class Eager(Recorder):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.get_pipe_transport(0).write(b"early")
            transport.get_pipe_transport(0).close()
            transport.get_pipe_transport(2).pause_reading()

    code = "import sys; sys.stdout.write(sys.stdin.read().upper()); sys.stderr.write('e')"
    t, p = spawner.spawn(code, Eager())
    spawner.run_until(lambda: t.get_returncode() is not None and 1 in p.lost, "stdout")
    assert p.data == {1: b"EARLY"} and not p.exited  # stderr is paused, still open
    t.get_pipe_transport(2).resume_reading()
    spawner.wait_exited(p)
    assert p.data == {1: b"EARLY", 2: b"e"}


# ------------------------------------------------------------ flow control


def test_one_mebibyte_goes_through_a_pipe_each_way_with_flow_control(spawner: Spawner) -> None:
    payload = os.urandom(1 << 20)
    t, p = spawner.spawn(COPY)
    stdin = t.get_pipe_transport(0)
    stdin.write(payload)
    assert stdin.get_write_buffer_size() > 0  # a pipe holds far less than 1 MiB
    assert p.flow == ["pause"]
    stdin.close()
    spawner.wait_exited(p)
    assert p.data[1] == payload
    assert p.flow == ["pause", "resume"]
    assert stdin.get_write_buffer_size() == 0
    assert t.get_returncode() == 0


def test_paused_reading_holds_the_output_until_resumed(one: Spawner) -> None:
    t, p = one.spawn("import os; os.write(1, b'held')")
    stdout = t.get_pipe_transport(1)
    stdout.pause_reading()
    assert not stdout.is_reading()
    one.run_until(lambda: t.get_returncode() is not None, "the child's exit status")
    assert 1 not in p.data and not p.exited  # stdout is still open on our side
    stdout.resume_reading()
    one.wait_exited(p)
    assert p.data[1] == b"held"


def test_write_buffer_limits_follow_asyncio_and_refuse_bad_marks(one: Spawner) -> None:
    t, _ = one.spawn(WAIT_FOR_STDIN_EOF)
    stdin = t.get_pipe_transport(0)
    stdin.set_write_buffer_limits(low=100)
    assert stdin.get_write_buffer_limits() == (100, 400)
    stdin.set_write_buffer_limits(high=1000)
    assert stdin.get_write_buffer_limits() == (250, 1000)
    for high, low in [(10, 20), (-1, None), (None, -1)]:
        with pytest.raises(ValueError):
            stdin.set_write_buffer_limits(high, low)


class PushProducer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_producing(self) -> None:
        self.calls.append("pause")

    def resume_producing(self) -> None:
        self.calls.append("resume")

    def stop_producing(self) -> None:
        self.calls.append("stop")


def test_a_push_producer_is_paused_and_resumed_with_the_buffer(one: Spawner) -> None:
    t, p = one.spawn(COPY)
    stdin = t.get_pipe_transport(0)
    producer = PushProducer()
    stdin.register_producer(producer, True)
    with pytest.raises(RuntimeError, match="already has producer"):
        stdin.register_producer(PushProducer(), True)
    stdin.write(b"x" * (1 << 20))
    assert producer.calls == ["pause"]
    one.run_until(lambda: producer.calls == ["pause", "resume"], "the producer to resume")
    stdin.unregister_producer()
    stdin.close()
    one.wait_exited(p)
    assert len(p.data[1]) == 1 << 20
    assert producer.calls == ["pause", "resume"]


def test_a_pull_producer_is_asked_for_each_chunk_when_the_buffer_is_empty(one: Spawner) -> None:
    t, p = one.spawn(COPY)
    stdin = t.get_pipe_transport(0)

    class Pull:
        def __init__(self) -> None:
            self.left = 40

        def resume_producing(self) -> None:
            stdin.write(b"y" * 50_000)
            self.left -= 1
            if not self.left:
                stdin.unregister_producer()
                stdin.close()

        def stop_producing(self) -> None:
            pass

    stdin.register_producer(Pull(), False)
    one.wait_exited(p)
    assert p.data[1] == b"y" * 2_000_000


def test_a_producer_registered_on_a_closed_pipe_is_stopped(one: Spawner) -> None:
    t, p = one.spawn(WAIT_FOR_STDIN_EOF)
    stdin = t.get_pipe_transport(0)
    stdin.close()
    one.wait_exited(p)
    producer = PushProducer()
    stdin.register_producer(producer, True)
    assert producer.calls == ["stop"]


# ------------------------------------------------------- closing and errors


def test_writing_to_a_child_that_exited_reports_a_broken_pipe(spawner: Spawner) -> None:
    t, p = spawner.spawn("import os; os.close(0)")
    t.get_pipe_transport(0).write(b"z" * (1 << 20))  # more than a pipe holds: buffered
    assert t.get_pipe_transport(0).get_write_buffer_size() > 0
    spawner.wait_exited(p)
    assert isinstance(p.lost[0], BrokenPipeError)


def test_the_stdin_pipe_closes_by_itself_when_the_child_exits(one: Spawner) -> None:
    t, p = one.spawn("pass")
    one.wait_exited(p)  # we never closed stdin, yet process_exited came
    assert p.lost[0] is None
    assert t.get_pipe_transport(0).is_closing()


def test_writes_after_close_are_dropped_and_non_bytes_refused(one: Spawner) -> None:
    t, p = one.spawn(ECHO_UPPER)
    stdin = t.get_pipe_transport(0)
    with pytest.raises(TypeError):
        stdin.write("text")
    stdin.write(b"a")
    stdin.close()
    stdin.write(b"b")
    stdin.close()
    one.wait_exited(p)
    assert p.data[1] == b"A"


def test_close_closes_every_pipe_but_the_child_runs_until_killed(one: Spawner) -> None:
    t, p = one.spawn("import time; time.sleep(60)")
    t.close()
    assert t.is_closing()
    one.run_until(lambda: len(p.lost) == 3, "the pipes to close")
    assert t.get_returncode() is None and not p.exited
    t.kill()
    one.wait_exited(p)
    assert t.get_returncode() == -signal.SIGKILL


def test_an_error_in_pipe_data_received_is_logged_and_closes_that_pipe(
    one: Spawner, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Recorder):
        def pipe_data_received(self, fd: int, data: bytes) -> None:
            raise ValueError("bad data")

    with caplog.at_level(logging.ERROR, logger="plait.cluster._process"):
        _, p = one.spawn("import os; os.write(1, b'x'); os.write(2, b'y')", Broken())
        one.wait_exited(p)
    assert isinstance(p.lost[1], ValueError) and isinstance(p.lost[2], ValueError)
    assert any("pipe_data_received" in r.getMessage() for r in caplog.records)


def test_an_error_in_connection_made_kills_the_child_and_propagates(one: Spawner) -> None:
    class Refuses(Recorder):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            raise RuntimeError("no thanks")

    proto = Refuses()
    with pytest.raises(RuntimeError, match="no thanks"):
        one.spawn("import time; time.sleep(60)", proto)
    transport = proto.transport
    one.transports.append(transport)
    one.run_until(lambda: transport.get_returncode() is not None, "the child to die")
    assert transport.get_returncode() == -signal.SIGKILL
    assert proto.events == [] and not proto.exited


# ------------------------------------------------------ environment and paths


def test_env_none_inherits_our_environment(one: Spawner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_INHERITED", "yes")
    _, p = one.spawn("import os; print(os.environ['PLAIT_INHERITED'])")
    one.wait_exited(p)
    assert p.data[1].strip() == b"yes"


def test_env_replaces_the_environment(one: Spawner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLAIT_NOT_PASSED", "1")
    code = "import os; print(os.environ.get('PLAIT_ONLY'), 'PLAIT_NOT_PASSED' in os.environ)"
    _, p = one.spawn(code, env={"PLAIT_ONLY": "here"})
    one.wait_exited(p)
    assert p.data[1].split() == [b"here", b"False"]


def test_path_sets_the_working_directory(one: Spawner, tmp_path: Path) -> None:
    _, p = one.spawn("import os; print(os.getcwd())", path=tmp_path)
    one.wait_exited(p)
    assert Path(p.data[1].decode().strip()).resolve() == tmp_path.resolve()


def test_argv_zero_is_found_on_the_childs_path(one: Spawner) -> None:
    proto = Recorder()
    env = {"PATH": os.path.dirname(PY)}
    argv = [os.path.basename(PY), "-c", "import sys; print(sys.argv[0])"]
    t = one.reactor.spawn_process(proto, argv, env=env)
    one.transports.append(t)
    one.wait_exited(proto)
    assert proto.data[1].strip() == b"-c"
    assert t.get_extra_info("argv") == tuple(argv)
    assert t.get_extra_info("pid") == t.get_pid() > 0
    assert t.get_extra_info("path") is None
    assert t.get_extra_info("nothing", "dflt") == "dflt"


# ------------------------------------------------------------ child_fds


def test_a_pipe_on_a_higher_child_descriptor(one: Spawner) -> None:
    code = """
        import os
        os.write(3, b"on three")
        print(os.readlink("/proc/self/fd/2"))
    """
    t, p = one.spawn(code, child_fds={0: "r", 1: "w", 3: "w"})
    one.wait_exited(p)
    assert p.data == {1: b"/dev/null\n", 3: b"on three"}
    assert t.get_pipe_transport(2) is None
    assert set(p.lost) == {0, 1, 3}


def test_a_child_stdin_pipe_on_a_higher_descriptor(one: Spawner) -> None:
    t, p = one.spawn("import os; os.write(1, os.read(4, 100))", child_fds={1: "w", 4: "r"})
    t.get_pipe_transport(4).write(b"via four")
    one.wait_exited(p)
    assert p.data == {1: b"via four"}


def test_one_of_our_descriptors_is_passed_to_the_child(one: Spawner) -> None:
    read_end, write_end = os.pipe()
    try:
        _, p = one.spawn("import os; os.write(1, b'direct')", child_fds={1: write_end, 2: "w"})
        os.close(write_end)
        write_end = -1
        one.wait_exited(p)
        assert os.read(read_end, 100) == b"direct"
        assert 1 not in p.data
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_descriptors_are_swapped_without_clobbering_each_other(one: Spawner) -> None:
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    try:
        code = "import os; os.write(5, b'five'); os.write(6, b'six')"
        mapping = {5: b_w, 6: a_w, 1: "w"}
        _, p = one.spawn(code, child_fds=mapping)
        os.close(a_w)
        os.close(b_w)
        one.wait_exited(p)
        assert os.read(b_r, 10) == b"five" and os.read(a_r, 10) == b"six"
    finally:
        os.close(a_r)
        os.close(b_r)


def test_with_path_a_descriptor_is_passed_under_its_own_number(
    one: Spawner, tmp_path: Path
) -> None:
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, False)
    try:
        code = f"import os; os.write({write_end}, b'same number')"
        _, p = one.spawn(code, path=tmp_path, child_fds={1: "w", write_end: write_end})
        os.close(write_end)
        one.wait_exited(p)
        assert os.read(read_end, 100) == b"same number"
    finally:
        os.close(read_end)


def test_with_path_other_high_descriptor_mappings_are_refused(
    one: Spawner, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="own number"):
        one.spawn("pass", path=tmp_path, child_fds={3: "w"})


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        ("echo hi", TypeError),
        (b"echo", TypeError),
        ([], ValueError),
        ([PY, 3], TypeError),
        ([PY, "-c", "pass\0"], ValueError),
        (None, TypeError),
    ],
)
def test_bad_argv_is_refused(one: Spawner, argv: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        one.reactor.spawn_process(Recorder(), argv)


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"A": 1}, TypeError),
        ({1: "a"}, TypeError),
        ({"A=B": "c"}, ValueError),
        ({"": "x"}, ValueError),
    ],
)
def test_bad_env_is_refused(one: Spawner, env: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        one.reactor.spawn_process(Recorder(), [PY, "-c", "pass"], env=env)


@pytest.mark.parametrize(
    ("child_fds", "error"),
    [
        ({0: "x"}, ValueError),
        ({-1: "r"}, ValueError),
        ({"0": "r"}, TypeError),
        ({0: 1.5}, TypeError),
        ({0: True}, TypeError),
        ({0: 987_654}, ValueError),
        ([(0, "r")], TypeError),
    ],
)
def test_bad_child_fds_are_refused(one: Spawner, child_fds: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        one.reactor.spawn_process(Recorder(), [PY, "-c", "pass"], child_fds=child_fds)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_missing_executable_raises_at_once_and_leaks_nothing(one: Spawner) -> None:
    before = open_fds()
    with pytest.raises(FileNotFoundError, match="plait-no-such-program"):
        one.reactor.spawn_process(Recorder(), ["plait-no-such-program"])
    with pytest.raises(FileNotFoundError):
        one.reactor.spawn_process(Recorder(), ["/nonexistent/plait-program"])
    assert open_fds() == before


def test_a_file_that_is_not_executable_raises_permission_error(
    one: Spawner, tmp_path: Path
) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError):
        one.reactor.spawn_process(Recorder(), [str(script)])


def test_a_missing_working_directory_raises_at_once(one: Spawner, tmp_path: Path) -> None:
    before = open_fds()
    with pytest.raises(FileNotFoundError):
        one.spawn("pass", path=tmp_path / "missing")
    assert open_fds() == before


# -------------------------------------------------------------- many, and more


def test_twenty_children_at_once(spawner: Spawner) -> None:
    children = [spawner.spawn(f"import sys; print({n}); sys.exit({n})") for n in range(20)]
    spawner.wait_exited(*(p for _, p in children))
    for n, (t, p) in enumerate(children):
        assert t.get_returncode() == n
        assert p.data[1].strip() == str(n).encode()


def test_no_descriptor_is_left_open_after_the_child_is_done(spawner: Spawner) -> None:
    spawner.spawn("pass")  # let the reactor and the SIGCHLD route set themselves up
    spawner.wait_exited(*[spawner.transports[0]._protocol])
    before = open_fds()
    t, p = spawner.spawn(ECHO_UPPER)
    t.get_pipe_transport(0).close()
    spawner.wait_exited(p)
    assert open_fds() == before


def test_transports_and_pipes_provide_their_interfaces(one: Spawner) -> None:
    t, _ = one.spawn(WAIT_FOR_STDIN_EOF)
    assert verifyObject(IProcessTransport, t)
    assert verifyObject(IConsumer, t.get_pipe_transport(0))
    assert verifyObject(IPushProducer, t.get_pipe_transport(1))
    assert not IPullProducer.providedBy(t.get_pipe_transport(1))
    assert "running" in repr(t) and "ReadPipe" in repr(t.get_pipe_transport(1))
    assert t.get_pipe_transport(1).get_extra_info("child_fd") == 1


def test_without_pidfds_spawning_outside_the_main_thread_raises_and_ends_the_child(
    one: Spawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_process, "_use_pidfd", False)
    errors: list[BaseException] = []
    before = open_fds()

    def spawn() -> None:
        try:
            one.spawn(WAIT_FOR_STDIN_EOF)
        except ValueError as exc:
            errors.append(exc)

    thread = threading.Thread(target=spawn)
    thread.start()
    thread.join(WAIT)
    assert len(errors) == 1 and "main thread" in str(errors[0])
    assert open_fds() == before
    assert one.transports == []


@pytest.mark.parametrize("with_path", [False, True])
def test_the_child_does_not_inherit_pythons_ignored_sigpipe(
    one: Spawner, tmp_path: Path, with_path: bool
) -> None:
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc")
    proto = Recorder()
    path = str(tmp_path) if with_path else None
    t = one.reactor.spawn_process(proto, ["cat", "/proc/self/status"], path=path)
    one.transports.append(t)
    one.wait_exited(proto)
    fields = dict(line.split(":\t", 1) for line in proto.data[1].decode().splitlines())
    ignored = int(fields["SigIgn"], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert int(fields["SigBlk"], 16) == 0
