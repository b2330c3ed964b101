"""Public modules export what DESIGN.md names, and nothing private (trio's test_exports).

``EXPECTED`` is the table of public modules of ``plait.cluster`` that DESIGN.md and
STYLE.md name, each with the names DESIGN gives it. It lists only modules that are
written; a module in the table that cannot be imported fails
``test_every_module_in_the_table_imports``, so a module is never skipped quietly,
and a new public module (a file under ``cluster/`` without a leading ``_``) fails
``test_every_public_module_under_cluster_is_in_the_table`` until it gets its row.

The layering rule of STYLE.md (``cluster`` never imports ``protocols``, ``worker``
or ``supervisor``) is checked by walking the AST of every module under ``cluster/``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from types import ModuleType

import pytest

EXPECTED: dict[str, set[str]] = {
    "plait.cluster": {"react"},
    "plait.cluster.defer": {
        "AlreadyCalledError",
        "CancelledError",
        "Deferred",
        "DeferredList",
        "DeferredLock",
        "DeferredQueue",
        "DeferredSemaphore",
        "TimeoutError",
        "ensure_deferred",
        "fail",
        "gather",
        "inline_callbacks",
        "race",
        "succeed",
    },
    "plait.cluster.failure": {"Failure"},
    "plait.cluster.task": {"Clock", "LoopingCall", "cooperate", "defer_later"},
    "plait.cluster.interfaces": {
        "IProtocol",
        "IReactorProcess",
        "IReactorSSL",
        "IReactorTCP",
        "IReactorThreads",
        "IReactorTime",
        "IReactorUDP",
        "IReactorUNIX",
        "ITransport",
    },
    "plait.cluster.reactor": {"AsyncioReactor", "Reactor", "get_reactor", "react"},
    "plait.cluster.endpoints": {"ClientService", "client_from_string", "server_from_string"},
    "plait.cluster.threads": {"ThreadPool", "blocking_call_from_thread", "defer_to_thread"},
    "plait.cluster.protocol": {"DatagramProtocol", "Factory", "ProcessProtocol", "Protocol"},
    "plait.cluster.testing": {"IOPump", "MemoryReactor", "MemoryTransport", "connect_in_memory"},
    "plait.cluster.rpc": {"Bus", "NoSuchMethod", "PeerLost", "RemoteError", "TimeoutError"},
    "plait.cluster.tls": {
        "CertificateVerifyError",
        "TLSError",
        "TLSOptions",
        "TLSTransport",
        "client_options",
        "server_options",
    },
}


NOT_AN_API: dict[str, str] = {
    "plait.cluster.testing.pytest_plugin": "pytest hooks and fixtures, loaded by pytest11",
}

FORBIDDEN_IN_CLUSTER = ("plait.protocols", "plait.worker", "plait.supervisor")
CLUSTER_DIR = Path(__file__).resolve().parent.parent / "cluster"


def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def public_modules(root: Path = CLUSTER_DIR) -> list[str]:
    """The dotted names of the modules under ``cluster/`` whose path has no ``_`` part."""
    names = []
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if any(part.startswith("_") for part in parts):
            continue
        names.append(".".join(["plait", "cluster", *parts]))
    return sorted(names)


def test_every_public_module_under_cluster_is_in_the_table() -> None:
    """A new public module gets a row in EXPECTED with the names DESIGN gives it."""
    found = set(public_modules())
    assert "plait.cluster.defer" in found and "plait.cluster" in found
    missing = sorted(found - set(EXPECTED) - set(NOT_AN_API))
    assert missing == [], f"add {missing} to EXPECTED in tests/test_exports.py"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_module_in_the_table_imports(name: str) -> None:
    assert isinstance(_module(name), ModuleType)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_all_is_a_list_of_unique_public_names_that_exist(name: str) -> None:
    module = _module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list | tuple), f"{name} has no __all__ list"
    assert all(isinstance(item, str) for item in exported)
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    assert [n for n in exported if n.startswith("_")] == []
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names what it does not define: {missing}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_all_holds_every_name_design_gives_the_module(name: str) -> None:
    missing = EXPECTED[name] - set(_module(name).__all__)
    assert missing == set(), f"{name} lacks DESIGN names {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_plait_object_is_reachable_outside_all(name: str) -> None:
    """A public module is a thin re-export: every Plait class or function it holds is in
    ``__all__`` or has a private name."""
    module = _module(name)
    exported = set(module.__all__)
    leaked = sorted(
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and attr not in exported
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith("plait.")
    )
    assert leaked == [], f"{name} exposes {leaked} without listing them in __all__"


def forbidden_imports(source: str, filename: str = "<source>") -> list[str]:
    """Every ``plait.protocols``/``worker``/``supervisor`` import in ``source``.

    Catches ``import x``, ``from x import y`` and ``importlib.import_module("x")`` /
    ``__import__("x")`` with a literal name.
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if called in ("import_module", "__import__") and isinstance(arg, ast.Constant):
                names = [str(arg.value)]
        if isinstance(node, ast.ImportFrom) and node.module == "plait" and node.level == 0:
            names += [f"plait.{alias.name}" for alias in node.names]
        found += [
            f"{filename}:{getattr(node, 'lineno', 0)}: {n}"
            for n in names
            if any(n == bad or n.startswith(bad + ".") for bad in FORBIDDEN_IN_CLUSTER)
        ]
    return sorted(set(found))


def test_cluster_imports_nothing_from_the_layers_above_it() -> None:
    files = sorted(CLUSTER_DIR.rglob("*.py"))
    assert files, f"no modules found under {CLUSTER_DIR}"
    bad: list[str] = []
    for path in files:
        bad += forbidden_imports(path.read_text(encoding="utf-8"), str(path))
    assert bad == []


@pytest.mark.parametrize(
    "source",
    [
        "import plait.protocols.http",
        "from plait.worker import Worker",
        "from plait import supervisor",
        "def f():\n    from plait.supervisor.cli import main\n",
        "import importlib\nimportlib.import_module('plait.protocols.framing')",
        "__import__('plait.worker')",
    ],
)
def test_the_layering_walk_catches_each_kind_of_import(source: str) -> None:
    assert forbidden_imports(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import plait.cluster.defer",
        "from plait.cluster import reactor",
        "from . import _memory",
        "import plait_protocols_lookalike",
        "x = 'plait.protocols'",
    ],
)
def test_the_layering_walk_allows_imports_within_cluster(source: str) -> None:
    assert forbidden_imports(source) == []
