"""README.md and docs/*.md: every relative link leads to a file (and heading) that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Anchors of every heading of a markdown file (repeats get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(page: Path) -> list[str]:
    """Link and image targets outside code blocks and code spans."""
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))
    return LINK.findall(text)


def broken(page: Path) -> list[str]:
    bad = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:: not checked offline
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target} (no file {dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target} (no heading #{anchor} in {dest.name})")
    return bad


def test_the_pages_exist_and_the_readme_stays_short():
    assert len(PAGES) > 1
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    assert links(page) or page.name != "README.md"
    assert not broken(page), f"{page.relative_to(REPO)}: broken links {broken(page)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_issue_numbers(page):
    found = re.findall(r"\bissues? #?\d+|(?<![\w/&])#\d+\b", page.read_text(), re.IGNORECASE)
    assert not found, f"{page.relative_to(REPO)}: {found}"


def test_the_checker_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n## Sub part\n[ok](b.md#the-end) [self](#sub-part)\n"
                                   "[gone](c.md) [bad](b.md#nowhere) `[code](x.md)`\n")
    (tmp_path / "b.md").write_text("# The end\n")
    assert broken(tmp_path / "a.md") == [
        f"c.md (no file {tmp_path / 'c.md'})", "b.md#nowhere (no heading #nowhere in b.md)"]


def test_docs_named_in_the_code_exist_with_the_headings_quoted():
    """`docs/conventions.md ("Metrics")` in a docstring: that file, that heading."""
    cited = 0
    for source in sorted((REPO / "src").rglob("*.py")):
        text = " ".join(source.read_text().split())  # a citation may wrap across lines
        for name, heading in re.findall(r'(docs/[\w-]+\.md)(?:,? \("?([^")]+)"?\))?', text):
            cited += 1
            assert (REPO / name).is_file(), f"{source}: {name} does not exist"
            if heading:
                assert slug(heading) in anchors(REPO / name), f"{source}: no '{heading}' in {name}"
    assert cited
