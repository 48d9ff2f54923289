"""The public Obsidian help vault (obsidianmd/obsidian-help) loads as a knowledge base as-is.

Needs the repository's mirror on this machine (the `fetch` tool puts it under /work/.mirror); skipped
cleanly elsewhere. The vault is exported to a temporary folder, never committed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from loracle.kb import KBPaths
from loracle.wiki import lint
from loracle.wiki.links import LinkGraph

pytestmark = pytest.mark.integration

MIRROR = Path(os.environ.get("OBSIDIAN_HELP_GIT", "/work/.mirror/obsidianmd+obsidian-help/repo"))


def export_vault(git_dir: Path, folder: str, dest: Path) -> None:
    """Markdown files with their text; other files (images, video) as empty files: links only need their names."""
    listing = subprocess.run(
        ["git", "--git-dir", str(git_dir), "ls-tree", "-r", "-z", "HEAD", folder], capture_output=True, check=True
    ).stdout.decode("utf-8")
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        sha = meta.split()[2]
        target = dest / Path(path).relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.endswith(".md"):
            blob = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "blob", sha], capture_output=True)
            target.write_bytes(blob.stdout)
        else:
            target.write_bytes(b"")


@pytest.mark.skipif(not MIRROR.is_dir(), reason=f"no obsidian-help mirror at {MIRROR}")
def test_obsidian_help_vault_loads_as_is(tmp_path: Path) -> None:
    root = tmp_path / "kb"
    export_vault(MIRROR, "en", root / "wiki")
    (root / "loracle.toml").write_text("")
    kb = KBPaths(root)
    graph = LinkGraph(kb.wiki)
    resolved, total = graph.link_counts()
    assert len(graph.content_pages()) > 100 and total > 1000
    assert resolved / total > 0.99, f"{total - resolved} of {total} links do not resolve"
    report = lint(kb)
    broken = [f for f in report.findings if f.kind == "broken_link"]
    # what stays broken are the vault's own deliberate examples ([[Example]] on the page about links)
    assert {f.page for f in broken} <= {"Linking notes and files/Internal links.md"}
    assert len(report.flagged_pages()) < 0.15 * report.pages
    assert not any(f.kind == "missing_from_index" for f in report.findings)  # the vault has no index.md
