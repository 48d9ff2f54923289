"""A cache of GGUF files converted to plain transformers folders, keyed by the GGUF file's hash.

Dequantising a GGUF and building its tokenizer takes ~25 s; reloading the converted folder takes
under a second. Entries are written to a temporary folder and renamed into place, so a crash never
leaves a half entry; an entry that fails to load is deleted and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from platformdirs import user_cache_dir

CACHE_ENV = "LORACLE_CACHE_DIR"
COMPLETE_MARKER = "loracle-complete.json"


def cache_root() -> Path:
    """The user's cache folder for loracle (LORACLE_CACHE_DIR overrides)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(user_cache_dir("loracle"))


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class ConvertedModelCache:
    """Folders under <cache>/<kind>/<sha256[:32]>/ holding a converted model (and its tokenizer)."""

    def __init__(self, root: Path | None = None, kind: str = "models") -> None:
        self.root = (root or cache_root()) / kind

    def entry_for(self, gguf: Path) -> Path:
        # The hash of a 100 MB file costs ~0.2 s; a stat-keyed memo spares it on repeated loads.
        stat = gguf.stat()
        memo_key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
        memo = self.root / "by-stat" / memo_key
        if memo.is_file():
            digest = memo.read_text().strip()
        else:
            digest = file_sha256(gguf)
            memo.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(memo, digest)
        return self.root / digest[:32]

    def is_complete(self, entry: Path) -> bool:
        return (entry / COMPLETE_MARKER).is_file()

    def discard(self, entry: Path) -> None:
        shutil.rmtree(entry, ignore_errors=True)

    def staging_dir(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))

    def publish(self, staging: Path, entry: Path, source: Path) -> None:
        """Mark a staged folder complete and rename it into place (the loser of a race discards its copy)."""
        files = {p.name: p.stat().st_size for p in staging.iterdir() if p.is_file()}
        (staging / COMPLETE_MARKER).write_text(json.dumps({"source": str(source), "files": files}))
        try:
            staging.rename(entry)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)

    def sizes_match(self, entry: Path) -> bool:
        """A cheap integrity check: every recorded file exists with its recorded size."""
        try:
            files = json.loads((entry / COMPLETE_MARKER).read_text())["files"]
        except (OSError, ValueError, KeyError):
            return False
        return all((entry / n).is_file() and (entry / n).stat().st_size == s for n, s in files.items())


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
