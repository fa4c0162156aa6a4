"""The committed Markdown (README, reports, results, BENCHMARKS.md): every relative link and image
resolves. Reports move (an older run's into a subfolder) and the README quotes them by path."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SKIP = {".venv", "runs", ".git", ".pytest_cache", "node_modules"}
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")  # [text](target) and ![alt](target), anchors dropped


def markdown_files() -> list[Path]:
    found = []
    for folder, subfolders, names in os.walk(REPO):
        subfolders[:] = [d for d in subfolders if d not in SKIP]  # never walk the virtualenv's packages
        found += [Path(folder) / n for n in names if n.endswith(".md")]
    return found


def broken_links(path: Path) -> list[str]:
    targets = LINK.findall(path.read_text(encoding="utf-8"))
    return [t for t in targets if not re.match(r"[a-z]+:", t) and not (path.parent / t).exists()]


def test_every_relative_link_in_the_committed_markdown_resolves():
    files = markdown_files()
    assert REPO / "README.md" in files and len(files) > 5
    broken = {str(p.relative_to(REPO)): links for p in files if (links := broken_links(p))}
    assert not broken, f"links to files that do not exist: {broken}"


def test_a_link_to_a_missing_file_is_found(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.png").write_bytes(b"")
    page.write_text("![a](there.png) [b](gone/search.md) [c](https://example.org/x) [d](there.png#top)\n")
    assert broken_links(page) == ["gone/search.md"]
