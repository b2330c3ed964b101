"""Every ```python block of every docs/*.md page runs, so the docs cannot rot.

A page's blocks run in order in one namespace (a fresh module per page), so a later
block may use what an earlier one defined. A block whose first line is
``# not-run`` is skipped (for fragments that need a network, a shell or a long
wait); such a block that is not marked fails here within 30 seconds. Line numbers
in tracebacks are those of the Markdown file.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
SKIP_MARK = "# not-run"


@dataclass(frozen=True)
class Block:
    """One fenced ```python block: its code and the line its first code line is on."""

    code: str
    first_line: int


def python_blocks(text: str) -> list[Block]:
    """The runnable ```python blocks of a Markdown text, in order.

    Raises:
        ValueError: a ```python fence is never closed.
    """
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i + 1
            end = start
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if end == len(lines):
                raise ValueError(f"```python block opened on line {i + 1} is never closed")
            body = lines[start:end]
            if not (body and body[0].strip() == SKIP_MARK):
                blocks.append(Block("\n".join(body) + "\n", start + 1))
            i = end
        i += 1
    return blocks


def test_blocks_are_found_in_order_and_not_run_blocks_skipped() -> None:
    text = "\n".join(
        [
            "# Title",
            "```python",
            "x = 1",
            "```",
            "Inline ```` ```python ```` is not a fence.",
            "```python",
            "# not-run",
            "import network",
            "```",
            "```text",
            "not python",
            "```",
            "```python",
            "y = x + 1",
            "```",
        ]
    )
    blocks = python_blocks(text)
    assert [b.code for b in blocks] == ["x = 1\n", "y = x + 1\n"]
    assert [b.first_line for b in blocks] == [3, 14]


def test_an_unclosed_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="line 1"):
        python_blocks("```python\nx = 1\n")


def _pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize(("page", "at_least"), [("deferreds.md", 8), ("testing.md", 5)])
def test_the_guides_keep_their_runnable_examples(page: str, at_least: int) -> None:
    """The pages the foundation promises examples on still have them, run below."""
    path = DOCS / page
    assert path.is_file(), f"docs/{page} is missing"
    assert len(python_blocks(path.read_text(encoding="utf-8"))) >= at_least


def _porting_rows(section: str) -> list[list[str]]:
    """The table rows (cells) under ``## <section>`` of porting-from-twisted.md."""
    text = (DOCS / "porting-from-twisted.md").read_text(encoding="utf-8")
    _, found, rest = text.partition(f"\n## {section}\n")
    assert found, f"porting-from-twisted.md has no '## {section}' section"
    body = rest.split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split(" | ") for line in body.splitlines()]
    return [cells for cells in rows if len(cells) >= 3 and not cells[0].startswith("---")][1:]


_PORTED_OWNERS = {
    "plait.cluster.defer": {"d": "Deferred", "f": "Failure", "Deferred": "Deferred"},
    "plait.cluster.task": {"clock": "Clock", "lc": "LoopingCall", "LoopingCall": "LoopingCall"},
}


@pytest.mark.parametrize("section", sorted(_PORTED_OWNERS))
def test_every_plait_name_in_the_porting_table_exists(section: str) -> None:
    """Each name in the Plait column of a porting table is a real attribute."""
    import importlib
    import re

    from plait.cluster import failure, task

    # Bare method names (``pause()`` of a CooperativeTask row) are looked up there too.
    namespaces = [importlib.import_module(section), failure, task, task.CooperativeTask]
    owners = _PORTED_OWNERS[section]
    instances: dict[str, object] = {
        "Clock": task.Clock(),
        "LoopingCall": task.LoopingCall(lambda: None),  # instance attributes too
    }
    missing: list[str] = []
    checked = 0
    for cells in _porting_rows(section):
        column = cells[1] if cells[1] not in ("same names", "same name") else cells[0]
        for code in re.findall(r"`([^`]+)`", column):
            match = re.match(r"(?:task\.)?([A-Za-z_]\w*)(?:\.([a-z_]\w*))?", code)
            if match is None or match.group(1) in ("return", "plait"):
                continue
            head, attr = match.groups()
            if head in owners:
                owner = instances.get(owners[head]) or next(
                    getattr(m, owners[head]) for m in namespaces if hasattr(m, owners[head])
                )
                if attr is not None:
                    checked += 1
                    if not hasattr(owner, attr):
                        missing.append(code)
            elif head[0].isupper() or attr is None:
                checked += 1
                if not any(hasattr(m, head) for m in namespaces):
                    missing.append(code)
    assert checked >= 15, f"only {checked} names found: did the table change shape?"
    assert missing == [], f"porting-from-twisted.md names what {section} lacks: {missing}"


@pytest.mark.timeout(30)  # a block that waits on a network or a reactor fails fast
@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.name)
def test_every_python_block_of_the_page_runs(page: Path) -> None:
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    name = f"docs_example_{page.stem.replace('-', '_')}"
    module = types.ModuleType(name)
    module.__file__ = str(page)
    sys.modules[name] = module  # dataclasses and pickle look their module up
    try:
        for block in blocks:
            # Pad so that tracebacks give the line numbers of the Markdown page.
            code = compile("\n" * (block.first_line - 1) + block.code, str(page), "exec")
            exec(code, module.__dict__)
    finally:
        del sys.modules[name]
