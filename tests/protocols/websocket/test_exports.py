"""The public WebSocket modules export what DESIGN.md names, and nothing private."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "plait.protocols.websocket",
    "plait.protocols.websocket.core",
    "plait.protocols.websocket.client",
    "plait.protocols.websocket.server",
    "plait.protocols.websocket.protocol",
]


def test_the_package_exports_the_design_names() -> None:
    package = importlib.import_module("plait.protocols.websocket")
    assert {"WebSocketResource", "connect", "ConnectionClosed"} <= set(package.__all__)


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_exists_and_none_is_private(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), n))
    for export in module.__all__:
        assert not export.startswith("_")
        assert hasattr(module, export), export
