"""The ```python examples in docs/framing.md and docs/http.md run and hold.

Blocks of one file run in order in one namespace, as a reader would type them; a
block whose first line is ``# not-run`` is skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[3] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(name: str) -> list[str]:
    return [b for b in BLOCK.findall((DOCS / name).read_text()) if not b.startswith("# not-run")]


@pytest.mark.parametrize("name", ["framing.md", "http.md"])
def test_the_examples_in_the_docs_run(name: str) -> None:
    found = blocks(name)
    assert found, f"no runnable examples in {name}"
    namespace: dict[str, object] = {"__name__": f"docs_{name}"}
    for i, source in enumerate(found):
        exec(compile(source, f"{name}[block {i}]", "exec"), namespace)
