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


# The README is a newcomer's page; the depth lives in docs/. Links between them must resolve.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOC_POINTER = re.compile(r"\bdocs/([\w-]+\.md)(#[\w-]+)?")


def anchors(path):
    """The anchors GitHub makes of a Markdown file's headings: lower case, punctuation dropped,
    blanks made hyphens, a repeated heading numbered -1, -2, ..."""
    seen, found = {}, set()
    text = FENCE.sub("", path.read_text())
    for heading in re.findall(r"^#+\s+(.*?)\s*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def broken_links(page):
    """'target (why)' for every relative link of `page` whose file or heading is not there."""
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked (the tests never use the network)
        name, _, anchor = target.partition("#")
        dest = (page.parent / name).resolve() if name else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading makes #{anchor})")
    return broken


def test_the_readme_links_to_docs_pages_that_exist():
    readme = ROOT / "README.md"
    linked = {name for name in LINK.findall(readme.read_text()) if name.startswith("docs/")}
    assert len(linked) >= 8, f"the README links to too few docs pages: {sorted(linked)}"
    assert not broken_links(readme), broken_links(readme)


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_every_relative_link_in_docs_resolves(page):
    assert not broken_links(page), f"{page.name}: {broken_links(page)}"


def test_every_pointer_from_the_code_to_docs_resolves():
    """A constant's comment says where its measurement is ("docs/performance.md#winograd-thresholds"):
    that page and heading must exist."""
    broken = []
    for source in sorted([*(ROOT / "tinynet").rglob("*.py"), *(ROOT / "kernels").rglob("*.py"),
                          *(ROOT / "benchmarks").glob("*.py")]):
        for name, anchor in DOC_POINTER.findall(source.read_text()):
            page = ROOT / "docs" / name
            if not page.is_file() or (anchor and anchor[1:] not in anchors(page)):
                broken.append(f"{source.relative_to(ROOT)}: docs/{name}{anchor}")
    assert not broken, broken


def test_the_readme_names_no_issue_numbers_or_commit_hashes():
    text = (ROOT / "README.md").read_text()
    issues = re.findall(r"\b[Ii]ssues? #?\d+|(?<![\w/])#\d+\b", text)
    hashes = [h for h in re.findall(r"(?<![\w./-])[0-9a-f]{7,40}(?![\w.-])", text)
              if re.search(r"\d", h) and re.search(r"[a-f]", h)]
    assert not issues and not hashes, (issues, hashes)
