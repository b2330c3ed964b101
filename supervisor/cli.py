"""The ``plait`` command.

Until the reactor cluster lands (the supervisor issue), ``plait run`` serves the app in
this one process on the native reactor: it loads APP, listens on every ``--listen``
endpoint and runs until SIGINT/SIGTERM. It says so when it starts, and it refuses the
cluster-only flags instead of ignoring them. Exit codes follow DESIGN.md: 0 after a
clean stop, 2 for a usage or configuration error, 3 when the app cannot boot.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AppLoadError", "RunConfig", "load_app", "main"]

DEFAULT_APP = "plait.worker.demo:app"
DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"
EXIT_USAGE = 2
EXIT_BOOT = 3

log = logging.getLogger("plait.cli")


class AppLoadError(Exception):
    """APP could not be imported or does not name a protocol factory."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """What ``plait run`` serves: the app and where it listens."""

    app: str = DEFAULT_APP
    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    name: str = "default"
    extra: dict[str, Any] = field(default_factory=dict)


_RUN_KEYS = {"app", "listen", "name"}
# Keys of plait.toml that belong to the cluster (DESIGN.md); accepted in the file so one
# file serves both, reported as not yet in effect.
_CLUSTER_KEYS = {
    "workers", "share", "control", "max_requests", "max_age", "max_memory",
    "graceful_timeout", "stall_timeout", "boot_timeout", "bus", "deploy",
}


def read_config(path: str) -> dict[str, Any]:
    """Read ``plait.toml``.

    Raises:
        ValueError: the file is missing, is not TOML, or has unknown keys.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read config {path!r}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config {path!r} is not valid TOML: {exc}") from exc
    unknown = set(data) - _RUN_KEYS - _CLUSTER_KEYS
    if unknown:
        raise ValueError(f"config {path!r}: unknown keys {sorted(unknown)}")
    listen = data.get("listen")
    if listen is not None and not (
        isinstance(listen, list) and all(isinstance(x, str) for x in listen)
    ):
        raise ValueError(f"config {path!r}: 'listen' must be a list of endpoint strings")
    if "app" in data and not isinstance(data["app"], str):
        raise ValueError(f"config {path!r}: 'app' must be a string 'module:attr'")
    return data


def load_app(spec: str) -> Callable[[], Any]:
    """Import ``module:attr`` and return the protocol factory it names.

    ``attr`` may name a protocol factory (any zero-argument callable returning a
    protocol) or a function ``setup(worker)`` returning one: a callable whose first
    parameter is called ``worker`` is treated as the latter and called with ``None``
    while no worker object exists (single-process mode).

    Raises:
        AppLoadError: the module or attribute is missing, or the setup call failed.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f"APP must be 'module:attr', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppLoadError(f"cannot import {module_name!r}: {exc!r}") from exc
    try:
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as exc:
        raise AppLoadError(f"{module_name!r} has no attribute {attr!r}") from exc
    if not callable(obj):
        raise AppLoadError(f"{spec!r} is not callable: {obj!r}")
    if _takes_worker(obj):
        try:
            obj = obj(None)
        except Exception as exc:
            raise AppLoadError(f"{spec}(worker) raised {exc!r}") from exc
        if not callable(obj):
            raise AppLoadError(f"{spec}(worker) returned {obj!r}, not a protocol factory")
    factory: Callable[[], Any] = obj
    return factory


def _takes_worker(obj: Callable[..., Any]) -> bool:
    import inspect

    if isinstance(obj, type):
        return False
    try:
        params = list(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "worker"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plait", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", help="serve APP (single process until the reactor cluster lands)"
    )
    run.add_argument("app", nargs="?", help=f"module:attr (default: {DEFAULT_APP})")
    run.add_argument(
        "--listen", action="append", metavar="ENDPOINT",
        help=f"server endpoint string, repeatable (default: {DEFAULT_LISTEN})",
    )
    run.add_argument("--config", metavar="PATH", help="plait.toml to read")
    run.add_argument("--name", help="cluster name (default: default)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    keys = commands.add_parser(
        "keys", help="generate the CURVE key pair that buses across hosts share"
    )
    keys.add_argument("--name", default="default", help="cluster name (default: default)")
    keys.add_argument("--run-dir", help="runtime directory (default: see docs/cli.md)")
    keys.add_argument("-o", "--out", metavar="PATH", help="key file (default: RUN_DIR/bus.key)")
    keys.add_argument("--force", action="store_true", help="replace an existing key file")
    keys.add_argument("--show", action="store_true", help="print the public key of the file")
    return parser


def make_keys(args: argparse.Namespace) -> int:
    """``plait keys``: write a fresh CURVE key pair (mode 0600) or show its public key."""
    from plait.cluster._rpc_keys import generate, load, save
    from plait.supervisor._paths import KEY_FILE, UnsafeRunDir, runtime_dir

    try:
        path = args.out or str(runtime_dir(args.name, args.run_dir) / KEY_FILE)
    except (UnsafeRunDir, OSError) as exc:
        print(f"plait: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.show:
        try:
            keys = load(path)
        except (OSError, ValueError) as exc:
            print(f"plait: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(keys.public.decode())
        return 0
    if os.path.exists(path) and not args.force:
        print(f"plait: {path} exists; --force replaces it (every node must then get "
              "the new file)", file=sys.stderr)
        return EXIT_USAGE
    keys = generate()
    try:
        save(keys, path)
    except OSError as exc:
        print(f"plait: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    print(f"plait: wrote {path} (mode 0600); public key {keys.public.decode()}")
    return 0


def build_config(args: argparse.Namespace) -> RunConfig:
    """Merge flags over ``plait.toml`` over the defaults (flags win).

    Raises:
        ValueError: a configuration error.
    """
    data = read_config(args.config) if args.config else {}
    app = args.app or data.get("app") or DEFAULT_APP
    listen = tuple(args.listen or data.get("listen") or (DEFAULT_LISTEN,))
    name = args.name or data.get("name") or "default"
    extra = {k: v for k, v in data.items() if k in _CLUSTER_KEYS}
    return RunConfig(app=app, listen=listen, name=name, extra=extra)


def serve(config: RunConfig) -> int:
    """Serve ``config`` in this process until stopped; returns the exit code."""
    try:
        factory = load_app(config.app)
    except AppLoadError as exc:
        print(f"plait: app cannot boot: {exc}", file=sys.stderr)
        return EXIT_BOOT
    from plait.cluster.defer import gather
    from plait.cluster.endpoints import server_from_string
    from plait.cluster.reactor import get_reactor

    # The process's reactor, so that app code calling get_reactor() gets this one.
    reactor = get_reactor()
    try:
        endpoints = [server_from_string(reactor, desc) for desc in config.listen]
    except ValueError as exc:
        print(f"plait: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = {"code": 0}

    def listening(ports: list[Any]) -> None:
        for desc, port in zip(config.listen, ports, strict=True):
            print(f"plait: serving {config.app} on {desc} -> {port.get_host()}", flush=True)

    def failed(failure: Any) -> None:
        print(f"plait: cannot listen: {failure.value}", file=sys.stderr, flush=True)
        status["code"] = EXIT_BOOT
        reactor.stop()

    def start() -> None:
        gather([e.listen(factory) for e in endpoints]).add_callbacks(listening, failed)

    if config.extra:
        print(
            f"plait: not yet in effect (cluster settings): {', '.join(sorted(config.extra))}",
            file=sys.stderr,
        )
    print(
        "plait: the reactor cluster is not built yet; serving in this one process "
        "on the native reactor (Ctrl-C stops)",
        flush=True,
    )
    reactor.call_when_running(start)
    reactor.run()
    return status["code"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``plait`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "keys":
        return make_keys(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        config = build_config(args)
    except ValueError as exc:
        print(f"plait: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
