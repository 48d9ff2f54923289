"""`loracle search` end to end: a knowledge base on disk, the real CLI in a subprocess, JSON out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.cli import loracle

pytestmark = pytest.mark.e2e


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    root = tmp_path / "kb"
    (root / "wiki").mkdir(parents=True)
    (root / "loracle.toml").write_text("", encoding="utf-8")
    pages = {
        "kestrel-valley-observatory.md": "---\ntitle: Kestrel Valley Observatory\naliases: [KVO]\n"
        "secret: zebrafish\n---\n# Kestrel Valley Observatory\n\nFounded by Ilse Marrow in 1987.\n",
        "harrow-telescope.md": "# Harrow Telescope\n\nA reflector with a 3.4 metre mirror at the [[KVO]].\n",
        "tokyo.md": "# 東京\n\n東京都は日本の首都です。\n",
        "index.md": "# Index\n\n- [[Kestrel Valley Observatory]]\n- [[Harrow Telescope]]\n",
    }
    for name, text in pages.items():
        (root / "wiki" / name).write_text(text, encoding="utf-8")
    (root / "wiki" / "broken.md").write_bytes(b"\xff\xfe not utf-8")
    return root


def test_search_json_bm25(kb: Path) -> None:
    result = loracle("search", "Marrow", "--kb", str(kb), "--json", "--mode", "bm25")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert [r["id"] for r in payload["results"]] == ["kestrel-valley-observatory"]
    assert payload["sync"]["added"] == 3 and len(payload["sync"]["errors"]) == 1
    assert "broken.md" in payload["sync"]["errors"][0]
    assert (kb / ".loracle" / "search.db").is_file()

    again = json.loads(loracle("search", "首都", "--kb", str(kb), "--json", "--mode", "bm25", "-n", "3").stdout)
    assert [r["id"] for r in again["results"]] == ["tokyo"] and again["sync"]["unchanged"] == 3
    hidden = json.loads(loracle("search", "zebrafish", "--kb", str(kb), "--json", "--mode", "bm25").stdout)
    assert hidden["results"] == []


def test_search_hybrid_table_and_errors(kb: Path) -> None:
    result = loracle("search", "Ilse Marrow", "--mode", "bm25", cwd=kb / "wiki")  # the KB found from the cwd
    assert result.returncode == 0, result.stderr
    assert "Kestrel Valley Observatory" in result.stdout and "broken.md" in result.stderr
    hybrid = json.loads(loracle("search", "telescope mirror", "--kb", str(kb), "--json").stdout)
    top = hybrid["results"][0]
    assert top["id"] == "harrow-telescope" and top["bm25_rank"] == 1 and top["vector_rank"] is not None

    missing = loracle("search", "x", "--kb", str(kb.parent / "nowhere"))
    assert missing.returncode == 1 and "not a loracle knowledge base" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad_mode = loracle("search", "x", "--kb", str(kb), "--mode", "fuzzy")
    assert bad_mode.returncode == 1 and "--mode fuzzy" in bad_mode.stderr
