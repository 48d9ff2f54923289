"""Where a knowledge base's parts live on disk (see DESIGN.md: an Obsidian-compatible vault)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from loracle.config import CONFIG_FILE, Config, load_config
from loracle.confine import check_not_linked_out
from loracle.errors import LoracleError

KB_ENV = "LORACLE_KB"


@dataclass(frozen=True)
class KBPaths:
    """The parts of the knowledge base at `root`. Its folders are refused at once if one is a link leading out
    of the knowledge base (a cloned knowledge base must not make loracle read or serve, say, ~/.ssh)."""

    root: Path

    def __post_init__(self) -> None:
        for folder in (self.raw, self.wiki, self.adapters, self.state):
            check_not_linked_out(folder, self.root)

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def raw(self) -> Path:
        """Sources, never modified by loracle."""
        return self.root / "raw"

    @property
    def wiki(self) -> Path:
        """Pages written by the LLM, plus index.md, log.md and SCHEMA.md."""
        return self.root / "wiki"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def state(self) -> Path:
        """search.db, state and caches: all rebuildable from raw/ and wiki/."""
        return self.root / ".loracle"

    @property
    def search_db(self) -> Path:
        return self.state / "search.db"

    def config(self) -> Config:
        return load_config(self.root)


def find_kb(explicit: Path | None = None) -> KBPaths:
    """The knowledge base named by --kb, else $LORACLE_KB, else the nearest folder upwards with loracle.toml."""
    if explicit is not None:
        root = explicit.expanduser()
        if not (root / CONFIG_FILE).is_file():
            raise LoracleError(f"{root}: not a loracle knowledge base (no {CONFIG_FILE}; run `loracle init {root}`)")
        return KBPaths(root.resolve())
    env = os.environ.get(KB_ENV)
    if env:
        return find_kb(Path(env))
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return KBPaths(folder)
    raise LoracleError(f"{here}: not inside a loracle knowledge base (use --kb DIR, or `loracle init DIR` first)")
