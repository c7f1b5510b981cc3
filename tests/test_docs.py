"""docs/walkthrough.md stays true: its examples run and its excerpts are tinynet's real source.

Fenced blocks marked `python` are examples: they run in order in one namespace, as a reader
pasting them one by one would run them. Blocks marked `py` are excerpts whose first line names
the source file ("# tinynet/functional.py"); every line of the excerpt must still be in it.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WALKTHROUGH = ROOT / "docs" / "walkthrough.md"
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


def blocks(kind):
    """(line number, code) of every fenced block whose info string is exactly `kind`."""
    text = WALKTHROUGH.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(2)) for m in FENCE.finditer(text) if m.group(1) == kind]


def test_walkthrough_has_examples_and_excerpts():
    assert len(blocks("python")) >= 10
    assert len(blocks("py")) >= 5


def test_every_python_block_runs_in_order(capsys):
    namespace = {"__name__": "walkthrough"}
    for line, code in blocks("python"):
        try:
            exec(compile(code, f"{WALKTHROUGH.name}:{line}", "exec"), namespace)
        except Exception as err:  # name the block so a failure points into the document
            pytest.fail(f"the python block at docs/walkthrough.md line {line} failed: {type(err).__name__}: {err}")


@pytest.mark.parametrize("line,code", blocks("py"), ids=lambda v: str(v) if isinstance(v, int) else "")
def test_every_excerpt_is_in_the_source(line, code):
    first, *rest = code.splitlines()
    source_name = first.lstrip("# ").strip()
    source = ROOT / source_name
    assert source.is_file(), f"excerpt at line {line} names {source_name!r}, which does not exist"
    source_lines = {s.strip() for s in source.read_text().splitlines()}
    missing = [s for s in rest if s.strip() and s.strip() not in source_lines]
    assert not missing, f"excerpt at docs/walkthrough.md line {line}: not in {source_name}: {missing}"
