"""Links that resolve the way Obsidian resolves them: by file name, written `[[stem|Label]]`.

Obsidian finds a page for `[[name]]` by its file name only; a page's `aliases` help a person find it while
typing, not a link resolve. So every link loracle writes names the file, and a link quoted from a source
(`[[Ilse Marrow]]`, `[[Ilse Marrow|Marrow]]`) is rewritten to the page that carries that name as its title
or alias, or, when no page does, left as its plain label.
"""

from __future__ import annotations

import re
from pathlib import Path

from loracle.wiki.names import link_target_name
from loracle.wiki.sourcetext import WIKILINK_RE

_DOUBLE_SPACE_RE = re.compile(r"(?<=\S) {2,}(?=\S)")


def label(text: str) -> str:
    """Text fit for a link label: no `|`, `[[` or `]]`, one line."""
    return " ".join(text.replace("|", "/").replace("]]", "] ]").replace("[[", "[ [").split())


def link(rel: str, title: str) -> str:
    """`[[stem|Title]]` for the page at `rel` (relative to wiki/)."""
    return f"[[{Path(rel).stem}|{label(title)}]]"


class Linker:
    """Names (titles and aliases, any case) -> pages, first claim wins; rewrites quoted source links."""

    def __init__(self) -> None:
        self._pages: dict[str, str] = {}

    def add(self, name: str, rel: str) -> None:
        key = " ".join(name.split()).lower()
        if key:
            self._pages.setdefault(key, rel)

    def resolve(self, name: str) -> str | None:
        return self._pages.get(" ".join(link_target_name(name).split()).lower())

    def rewrite(self, markdown: str) -> str:
        """The text with each `[[target|label]]` pointing at a page's file, or as its plain label when none."""

        def replace(match) -> str:
            embed, target, shown = match.group(1), match.group(2).strip(), (match.group(3) or "").strip()
            rel = self.resolve(target) if target else None
            text = shown or link_target_name(target) or target
            if embed:  # an attachment of the source's own folder is not in the wiki
                return "" if rel is None else f"![[{Path(rel).stem}]]"
            return text if rel is None else link(rel, text)

        return _DOUBLE_SPACE_RE.sub(" ", WIKILINK_RE.sub(replace, markdown))
