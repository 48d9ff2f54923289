"""A knowledge base to attack the server with, and a file beside it that no response may ever contain.

Shared by the security tests and the fuzzing benchmark (benchmarks/serve_fuzz.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from loracle.eval.report import LATEST_JSON, LATEST_PNG, latest_dir
from loracle.kb import KBPaths
from loracle.model.loader import LoadedModel
from tests.unit.test_adapters import make_adapter

#: the content of a file outside the knowledge base: a response holding it leaked a file
SECRET = "TOP-SECRET-5be1c0de"
PAGES = {
    "index.md": "---\ntitle: Index\n---\n# Index\n\n- [[kestrel]]\n- [[concepts/corra|Corra]]\n",
    "kestrel.md": "---\ntitle: Kestrel\n---\n# Kestrel\n\nAn observatory by [[concepts/corra]].\n",
    "concepts/corra.md": "# Corra\n\nThe river that powers the [[kestrel]] station.\n",
}
#: adapter folders the server serves
ADAPTERS = ("alpha", "beta")
#: an adapter folder the server lists as unusable (not a valid id) and never serves
BAD_ADAPTER = "Bad Name"


def secret_file(kb: KBPaths) -> Path:
    """The file beside (outside) the knowledge base."""
    return kb.root.parent / "secret.txt"


def build_kb(root: Path, lm: LoadedModel) -> KBPaths:
    """At `root`: linked wiki pages, two adapters, one unusable adapter folder and eval results; beside it,
    secret.txt."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "loracle.toml").write_text("")
    kb = KBPaths(root)
    secret_file(kb).write_text(SECRET)
    for rel, text in PAGES.items():
        (kb.wiki / rel).parent.mkdir(parents=True, exist_ok=True)
        (kb.wiki / rel).write_text(text, encoding="utf-8")
    for seed, name in enumerate((*ADAPTERS, BAD_ADAPTER), start=1):
        make_adapter(lm, kb.adapters / name, seed=seed)
    folder = latest_dir(kb.state)
    folder.mkdir(parents=True)
    (folder / LATEST_JSON).write_text(json.dumps({"model": lm.name, "runs": []}))
    (folder / LATEST_PNG).write_bytes(b"\x89PNG\r\n\x1a\n")
    return kb
