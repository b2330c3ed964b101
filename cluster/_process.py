"""Child processes: ``spawn_process`` and the process transport.

Theory of operation:

- **Descriptors.** ``child_fds`` maps a child descriptor number to ``"r"`` (the child
  reads it: we get a ``WritePipe``), ``"w"`` (the child writes it: we get a
  ``ReadPipe``) or an ``int`` (one of our descriptors, given to the child as that
  number). The letters are the child's point of view, as in ``open(fd, "r")``; the
  default is ``{0: "r", 1: "w", 2: "w"}``. Child descriptors 0-2 that the mapping
  leaves out are opened on ``/dev/null`` (never left closed: the child's first
  ``open()`` would land on them); every other descriptor of ours stays out of the
  child (Python makes descriptors non-inheritable, PEP 446).
- **Starting.** Without ``path`` the child is started with ``os.posix_spawn``
  (glibc's vfork-style spawn: safe with threads, any descriptor mapping). Every
  source descriptor is first duplicated above the highest target number (with
  close-on-exec), so the ``dup2`` actions cannot overwrite each other's sources.
  ``posix_spawn`` cannot change directory, so with ``path`` the child is started with
  ``subprocess.Popen(cwd=path)``; that route places descriptors 0-2 anywhere but
  passes higher ones only under their own number (``child_fds={5: 5}``), and refuses
  other mappings with ``ValueError``. Either way the executable is looked up on the
  child's ``PATH`` first, and a failure to start raises synchronously (asyncio's
  choice; Twisted reports it later as exit status 1).
- **Reaping, never blocking.** On Linux >= 5.3 a pidfd (``os.pidfd_open``) is watched
  with ``add_reader``; it turns readable when the child exits, and
  ``waitpid(pid, WNOHANG)`` then collects the status (asyncio's PidfdChildWatcher).
  Signals go through ``pidfd_send_signal``, so they cannot hit a recycled pid.
  Elsewhere one SIGCHLD handler per reactor (``reactor.add_signal_handler``) polls
  ``waitpid(pid, WNOHANG)`` for each child of ours; it also polls once right after
  registering, for a child that exited before the handler was in place.
- **Order of callbacks.** ``connection_made`` runs before ``spawn_process`` returns.
  Each pipe reports ``pipe_connection_lost`` once. ``process_exited`` runs once, last:
  after the exit status is known *and* every pipe has been reported closed (Twisted's
  ``processEnded`` order; asyncio's ``connection_lost`` point). A grandchild that
  inherited the child's stdout therefore delays ``process_exited`` until it closes it.
  ``get_returncode()`` is negative for a child killed by a signal (asyncio).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal as _signal
import subprocess
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from zope.interface import implementer

from plait.cluster._process_pipes import ReadPipe, WritePipe
from plait.cluster.interfaces import IProcessTransport

__all__ = ["DEFAULT_CHILD_FDS", "ProcessTransport", "spawn_process"]

_log = logging.getLogger(__name__)

#: The child reads 0 (we write its stdin) and writes 1 and 2 (we read them).
DEFAULT_CHILD_FDS: Mapping[int, str | int] = {0: "r", 1: "w", 2: "w"}

#: Tests turn this off to exercise the SIGCHLD route on a pidfd-capable kernel.
_use_pidfd = hasattr(os, "pidfd_open")

_Arg = str | bytes | os.PathLike[str] | os.PathLike[bytes]


@implementer(IProcessTransport)
class ProcessTransport:
    """A running child process: its pipes, its pid and, later, its exit status.

    Made by ``spawn_process`` (``reactor.spawn_process``); not meant to be built
    directly.
    """

    def __init__(
        self,
        reactor: Any,
        protocol: Any,
        pid: int,
        argv: tuple[_Arg, ...],
        path: str | None,
        pipe_fds: Mapping[int, tuple[str, int]],
        popen: subprocess.Popen[bytes] | None,
    ) -> None:
        self._reactor = reactor
        self._protocol = protocol
        self._pid = pid
        self._argv = argv
        self._path = path
        self._popen = popen
        self._returncode: int | None = None
        self._closing = False
        self._finished = False
        self._detached = False
        self._pidfd: int | None = None
        self._pipes: dict[int, ReadPipe | WritePipe] = {}
        self._open_pipes: set[int] = set()
        for child_fd, (mode, fd) in pipe_fds.items():
            pipe_type = WritePipe if mode == "r" else ReadPipe
            self._pipes[child_fd] = pipe_type(reactor, self, child_fd, fd)
            self._open_pipes.add(child_fd)

    def _start(self) -> None:
        try:
            self._watch_exit()
        except BaseException:
            # No way to reap it later (add_signal_handler refuses outside the main
            # thread): end it now. SIGKILL makes this waitpid short.
            os.kill(self._pid, _signal.SIGKILL)
            _, status = os.waitpid(self._pid, 0)
            self._returncode = os.waitstatus_to_exitcode(status)
            if self._popen is not None:
                self._popen.returncode = self._returncode
            for pipe in self._pipes.values():
                os.close(pipe.fileno())
            raise
        try:
            self._protocol.connection_made(self)
        except BaseException:
            # A protocol that cannot start: the child must not run unsupervised.
            self._detached = True
            self.kill()
            for pipe in self._pipes.values():
                pipe.abort()
            raise
        for pipe in self._pipes.values():
            pipe.start()

    # ----------------------------------------------------------------- the API

    def get_pid(self) -> int:
        """The child's process id."""
        return self._pid

    def get_returncode(self) -> int | None:
        """The exit status; ``-N`` if signal ``N`` killed it; ``None`` while it runs."""
        return self._returncode

    def get_pipe_transport(self, fd: int) -> ReadPipe | WritePipe | None:
        """The pipe on child descriptor ``fd`` (closed or not), or ``None`` if not piped."""
        return self._pipes.get(fd)

    def send_signal(self, signal: int) -> None:
        """Send ``signal`` to the child; does nothing once the child has been reaped.

        Raises:
            ValueError: ``signal`` is not a valid signal number.
        """
        sig = signal  # the interface names the parameter ``signal``; the module is _signal
        if sig != 0 and sig not in _signal.valid_signals():
            raise ValueError(f"{sig!r} is not a valid signal number")
        if self._returncode is not None:
            return  # reaped: the pid may belong to a stranger now
        if self._pidfd is not None:
            _signal.pidfd_send_signal(self._pidfd, sig)
        else:
            os.kill(self._pid, sig)

    def terminate(self) -> None:
        """Send SIGTERM."""
        self.send_signal(_signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL."""
        self.send_signal(_signal.SIGKILL)

    def close(self) -> None:
        """Close every pipe (a write pipe after sending its buffer); the child runs on.

        ``process_exited`` still follows, when the child exits.
        """
        self._closing = True
        for pipe in self._pipes.values():
            pipe.close()

    def is_closing(self) -> bool:
        """True once ``close`` was called or the child has exited."""
        return self._closing or self._returncode is not None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``pid``, ``argv`` (as given) or ``path`` (the working directory, or None)."""
        info = {"pid": self._pid, "argv": self._argv, "path": self._path}
        return info.get(name, default)

    def __repr__(self) -> str:
        state = "running" if self._returncode is None else f"returncode={self._returncode}"
        return f"<ProcessTransport pid={self._pid} {state}>"

    # -------------------------------------------------- called by the pipes

    def _pipe_data(self, child_fd: int, data: bytes) -> None:
        if self._detached:
            return
        try:
            self._protocol.pipe_data_received(child_fd, data)
        except Exception as exc:
            _log.exception("%r: pipe_data_received(%d) raised; closing that pipe", self, child_fd)
            self._pipes[child_fd]._close(exc)

    def _pipe_lost(self, child_fd: int, exc: BaseException | None) -> None:
        self._open_pipes.discard(child_fd)
        if not self._detached:
            try:
                self._protocol.pipe_connection_lost(child_fd, exc)
            except Exception:
                _log.exception("%r: pipe_connection_lost(%d) raised", self, child_fd)
        self._maybe_finish()

    def _flow(self, paused: bool) -> None:
        callback = getattr(self._protocol, "pause_writing" if paused else "resume_writing", None)
        if callback is None or self._detached:
            return
        try:
            callback()
        except Exception:
            _log.exception("%r: %s raised", self, callback)

    # ------------------------------------------------------------- reaping

    def _watch_exit(self) -> None:
        if _use_pidfd:
            try:
                self._pidfd = os.pidfd_open(self._pid)
            except OSError as exc:  # ENOSYS on old kernels, EPERM under some sandboxes
                _log.debug("pidfd_open unavailable (%s); using SIGCHLD", exc)
            else:
                self._reactor.add_reader(self._pidfd, self._pidfd_ready)
                return
        _child_watcher(self._reactor).add(self)

    def _pidfd_ready(self) -> None:
        if self._pidfd is not None:
            self._try_reap()

    def _try_reap(self) -> bool:
        """``waitpid`` without blocking; True once the exit status is known."""
        if self._returncode is not None:
            return True
        try:
            pid, status = os.waitpid(self._pid, os.WNOHANG)
        except ChildProcessError:
            # Someone else (a foreign SIGCHLD handler, os.wait()) took the status.
            _log.warning("%r was reaped by someone else; exit status unknown (255)", self)
            returncode = 255
        else:
            if pid == 0:
                return False
            returncode = os.waitstatus_to_exitcode(status)
        self._returncode = returncode
        if self._popen is not None:
            self._popen.returncode = returncode  # so subprocess never polls this pid again
        if self._pidfd is not None:
            self._reactor.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self._maybe_finish()
        return True

    def _maybe_finish(self) -> None:
        if self._finished or self._returncode is None or self._open_pipes:
            return
        self._finished = True
        if self._detached:
            return
        try:
            self._protocol.process_exited()
        except Exception:
            _log.exception("%r: process_exited raised", self)


class _ChildWatcher:
    """The SIGCHLD route: one handler per reactor that polls each child of ours."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._children: dict[int, ProcessTransport] = {}
        self._installed = False

    def add(self, process: ProcessTransport) -> None:
        if not self._installed:
            self._reactor.add_signal_handler(_signal.SIGCHLD, self._reap_all)
            self._installed = True
        self._children[process.get_pid()] = process
        self._reactor.call_soon(self._reap_all)  # it may have exited already

    def _reap_all(self) -> None:
        for pid, process in list(self._children.items()):
            if process._try_reap():
                del self._children[pid]
        if not self._children and self._installed:
            self._installed = False
            self._reactor.remove_signal_handler(_signal.SIGCHLD)


_watchers: weakref.WeakKeyDictionary[Any, _ChildWatcher] = weakref.WeakKeyDictionary()


def _child_watcher(reactor: Any) -> _ChildWatcher:
    watcher = _watchers.get(reactor)
    if watcher is None:
        watcher = _watchers[reactor] = _ChildWatcher(reactor)
    return watcher


# ---------------------------------------------------------------- spawning


def spawn_process(
    reactor: Any,
    protocol: Any,
    argv: Sequence[_Arg],
    env: Mapping[str, str] | None = None,
    path: str | os.PathLike[str] | None = None,
    child_fds: Mapping[int, str | int] | None = None,
) -> ProcessTransport:
    """Start ``argv`` as a child process wired to ``protocol``.

    Args:
        reactor: The reactor that watches the pipes and reaps the child.
        protocol: A process protocol (``plait.cluster.protocol.ProcessProtocol``
            shape). It may also define asyncio's ``pause_writing``/``resume_writing``
            to hear about the flow control of the pipes it writes to.
        argv: The program and its arguments; ``argv[0]`` is looked up on the child's
            ``PATH`` unless it contains a ``/``.
        env: The child's environment; ``None`` inherits ``os.environ``.
        path: The child's working directory; ``None`` keeps ours.
        child_fds: Child descriptor -> ``"r"`` (child reads, we write), ``"w"``
            (child writes, we read) or one of our descriptors. Default
            ``{0: "r", 1: "w", 2: "w"}``. See the module docstring.

    Returns:
        The process transport, after ``protocol.connection_made`` has run.

    Raises:
        TypeError: ``argv`` is a string or holds a non-path item; ``env`` holds a
            non-string; a ``child_fds`` key or value has the wrong type.
        ValueError: ``argv`` is empty or holds a NUL; a ``child_fds`` entry is
            invalid (negative, unknown mode, a closed descriptor); or ``path`` is
            given together with a descriptor mapping that route cannot make.
        FileNotFoundError: the executable or ``path`` does not exist.
        PermissionError: the executable cannot be run.
        OSError: any other failure to start the child.
    """
    args = _check_argv(argv)
    child_env = _check_env(env)
    mapping = _check_child_fds(DEFAULT_CHILD_FDS if child_fds is None else child_fds)
    cwd = None if path is None else os.fspath(path)
    executable = _find_executable(args[0], child_env)
    if cwd is not None:
        bad = [k for k, v in mapping.items() if k > 2 and v != k]
        if bad:
            raise ValueError(
                f"with path=, child descriptors above 2 can only be passed under their own "
                f"number (child_fds={{n: n}}); cannot map {bad}"
            )

    ours: dict[int, tuple[str, int]] = {}  # child fd -> (mode, our end)
    theirs: dict[int, int] = {}  # child fd -> the descriptor the child gets
    to_close: list[int] = []  # parent copies of the child ends
    try:
        for child_fd, value in mapping.items():
            if value == "r":
                read_end, write_end = os.pipe()
                ours[child_fd] = ("r", write_end)
                theirs[child_fd] = read_end
                to_close.append(read_end)
            elif value == "w":
                read_end, write_end = os.pipe()
                ours[child_fd] = ("w", read_end)
                theirs[child_fd] = write_end
                to_close.append(write_end)
            else:
                assert isinstance(value, int)
                theirs[child_fd] = value
        if cwd is None:
            pid, popen = _posix_spawn(executable, args, child_env, theirs, to_close), None
        else:
            popen = _popen(executable, args, child_env, cwd, theirs)
            pid = popen.pid
    except BaseException:
        for _mode, fd in ours.values():
            os.close(fd)
        raise
    finally:
        for fd in to_close:
            os.close(fd)

    for _mode, fd in ours.values():
        os.set_blocking(fd, False)
    transport = ProcessTransport(reactor, protocol, pid, tuple(argv), cwd, ours, popen)
    transport._start()
    return transport


def _posix_spawn(
    executable: _Arg,
    args: list[_Arg],
    env: Mapping[str, str],
    theirs: Mapping[int, int],
    to_close: list[int],
) -> int:
    # Move every source above every target so no dup2 clobbers a later source.
    floor = max([2, *theirs]) + 1
    actions: list[tuple[Any, ...]] = []
    for child_fd, source in theirs.items():
        moved = fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, floor)
        to_close.append(moved)
        actions.append((os.POSIX_SPAWN_DUP2, moved, child_fd))
    for child_fd in (0, 1, 2):
        if child_fd not in theirs:
            actions.append((os.POSIX_SPAWN_OPEN, child_fd, os.devnull, os.O_RDWR, 0))
    return os.posix_spawn(
        executable,
        args,
        env,
        file_actions=actions,
        setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ),  # Python ignores these; the child must not
        setsigmask=(),
    )


def _popen(
    executable: _Arg,
    args: list[_Arg],
    env: Mapping[str, str],
    cwd: str,
    theirs: Mapping[int, int],
) -> subprocess.Popen[bytes]:
    def std(child_fd: int) -> int:
        return theirs.get(child_fd, subprocess.DEVNULL)

    return subprocess.Popen(
        args,
        executable=executable,
        stdin=std(0),
        stdout=std(1),
        stderr=std(2),
        pass_fds=tuple(k for k in theirs if k > 2),
        close_fds=True,
        cwd=cwd,
        env=env,
    )


# --------------------------------------------------------------- validation


def _check_argv(argv: object) -> list[_Arg]:
    if isinstance(argv, str | bytes) or not isinstance(argv, Sequence):
        raise TypeError(f"argv must be a sequence of arguments, not {type(argv).__name__}")
    args = list(argv)
    if not args:
        raise ValueError("argv must name a program")
    for arg in args:
        if not isinstance(arg, str | bytes | os.PathLike):
            raise TypeError(f"argv items must be str, bytes or paths, not {type(arg).__name__}")
        if b"\0" in os.fsencode(arg):
            raise ValueError(f"argv item {arg!r} holds a NUL byte")
    return args


def _check_env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    if env is None:
        return os.environ
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"env entries must be str -> str, not {key!r}: {value!r}")
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"bad environment entry {key!r}")
    return dict(env)


def _check_child_fds(child_fds: object) -> dict[int, str | int]:
    if not isinstance(child_fds, Mapping):
        raise TypeError(f"child_fds must be a mapping, not {type(child_fds).__name__}")
    mapping: dict[int, str | int] = {}
    for key, value in child_fds.items():
        if isinstance(key, bool) or not isinstance(key, int):
            raise TypeError(f"child_fds keys must be ints, not {key!r}")
        if key < 0:
            raise ValueError(f"child_fds key {key} is negative")
        if isinstance(value, str):
            if value not in ("r", "w"):
                raise ValueError(f"child_fds[{key}] must be 'r', 'w' or an fd, not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"child_fds[{key}] must be 'r', 'w' or an int, not {value!r}")
        else:
            try:
                os.fstat(value)
            except OSError as exc:
                raise ValueError(f"child_fds[{key}] = {value} is not an open descriptor") from exc
        mapping[key] = value
    return mapping


def _find_executable(program: _Arg, env: Mapping[str, str]) -> _Arg:
    """``program`` if it holds a slash, else its first executable match on ``PATH``."""
    name = os.fsencode(program)
    if b"/" in name:
        return program
    for directory in os.get_exec_path(env):
        candidate = os.path.join(os.fsencode(directory), name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.fsdecode(candidate) if isinstance(program, str) else candidate
    raise FileNotFoundError(errno.ENOENT, "executable not found on PATH", os.fsdecode(name))
