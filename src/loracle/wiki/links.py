"""Wikilinks the way Obsidian reads them, and a link graph over a wiki folder.

Obsidian resolves `[[name]]` by file name anywhere in the vault (case-insensitively), by a path or path
suffix (`[[folder/name]]`), with or without `.md`, and attachments (`![[diagram.png]]`) by file name.
We also accept a page's frontmatter aliases. Links inside code (fenced or inline) are not links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from loracle.confine import read_text_in
from loracle.errors import LoracleError
from loracle.sources.folder import scan_source_files
from loracle.wiki.layout import REMOVED_CALLOUT, UNSUPPORTED
from loracle.wiki.pages import parse_page

LINK_RE = re.compile(r"(!?)\[\[([^\[\]|#^]*)(?:[#^]([^\[\]|]*))?(?:\|([^\[\]]*))?\]\]")
_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE_RE = re.compile(r"(`+)(?:(?!\1).)+?\1")
SPECIAL_PAGES = ("index.md", "log.md", "SCHEMA.md")


@dataclass(frozen=True)
class Link:
    target: str  # as written, "" for a same-page [[#Heading]]
    heading: str
    label: str
    line: int  # 1-based line in the page file
    embed: bool


@dataclass
class PageInfo:
    rel: str  # path relative to the wiki folder, with forward slashes
    title: str
    type: str
    aliases: list[str]
    summary: str
    links: list[Link]
    headings: list[str]
    text: str
    frontmatter: dict = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return Path(self.rel).stem

    @property
    def unsupported(self) -> bool:
        """Whether ingest flagged the page as resting on a removed source (by status, or by the callout alone
        where a person keeps a status of their own)."""
        return self.frontmatter.get("status") == UNSUPPORTED or f"\n{REMOVED_CALLOUT}" in f"\n{self.text}"


def find_links(text: str) -> list[Link]:
    """Every wikilink outside code, with the line it is on (lines end at "\n" only, as in an editor)."""
    links: list[Link] = []
    in_fence = False
    for number, line in enumerate(text.split("\n"), start=1):
        if _FENCE_RE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        for match in LINK_RE.finditer(_INLINE_CODE_RE.sub("", line)):
            embed, target, heading, label = match.groups()
            # inside a table the label bar is escaped: [[Page\|label]]
            target, heading = target.strip().rstrip("\\"), (heading or "").strip().rstrip("\\")
            links.append(Link(target.strip(), heading.strip(), (label or "").strip(), number, embed == "!"))
    return links


def _headings(text: str) -> list[str]:
    out, in_fence = [], False
    for line in text.splitlines():
        if _FENCE_RE.match(line):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            match = re.match(r"^#{1,6}\s+(.+?)\s*#*\s*$", line)
            if match:
                out.append(match.group(1))
    return out


def _norm(name: str) -> str:
    return name.strip().replace("\\", "/").lstrip("./").lower()


class LinkGraph:
    """All pages under a wiki folder, how their links resolve, and who links to whom.

    Files are found the way sources are (hidden ones skipped, links out of the folder neither read nor counted).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pages: dict[str, PageInfo] = {}
        self.files: list[str] = []  # every non-hidden file (attachments resolve too)
        found = {rel: Path(entry.path) for rel, entry in scan_source_files(root, suffixes=None)}
        for rel in sorted(found, key=lambda r: r.split("/")):
            self.files.append(rel)
            if rel.lower().endswith(".md"):
                self.pages[rel] = self._read(found[rel], rel, root)
        self._by_path: dict[str, str] = {}
        self._by_name: dict[str, list[str]] = {}
        for rel in self.files:
            lower = rel.lower()
            key = lower[:-3] if lower.endswith(".md") else lower
            self._by_path[key] = rel
            self._by_name.setdefault(key.rsplit("/", 1)[-1], []).append(rel)
        self._by_alias: dict[str, str] = {}
        for rel, page in self.pages.items():
            for alias in page.aliases:
                self._by_alias.setdefault(alias.strip().lower(), rel)
        self._resolved: dict[str, str | None] = {}

    @staticmethod
    def _read(path: Path, rel: str, root: Path) -> PageInfo:
        try:
            text = read_text_in(path, root)
        except (UnicodeDecodeError, OSError, LoracleError):
            text = ""
        page = parse_page(text)
        meta = page.frontmatter
        aliases = meta.get("aliases") or meta.get("alias") or []
        aliases = [str(a) for a in (aliases if isinstance(aliases, list) else [aliases]) if a]
        return PageInfo(
            rel=rel,
            title=str(meta.get("title") or Path(rel).stem),
            type=str(meta.get("type") or ""),
            aliases=aliases,
            summary=str(meta.get("summary") or ""),
            links=find_links(text),
            headings=_headings(text),
            text=text,
            frontmatter=meta,
        )

    def resolve(self, target: str, by_alias: bool = True) -> str | None:
        """The file a link target points at, or None when it is broken. With `by_alias=False`, as Obsidian itself
        resolves a link: by file name or path only (aliases only help a person pick a page while typing)."""
        if not by_alias:
            found = self.resolve(target)
            return None if found is not None and self._by_alias_only(target, found) else found
        if target in self._resolved:
            return self._resolved[target]
        key = _norm(target)
        key = key[:-3] if key.endswith(".md") else key
        found = self._by_path.get(key)
        if found is None and "/" not in key:
            candidates = self._by_name.get(key)
            found = sorted(candidates, key=lambda r: (r.count("/"), r))[0] if candidates else None
        if found is None and "/" in key:
            suffix = "/" + key
            matches = [rel for path_key, rel in self._by_path.items() if ("/" + path_key).endswith(suffix)]
            found = min(matches, key=len) if matches else None
        if found is None:
            found = self._by_alias.get(target.strip().lower())
        self._resolved[target] = found
        return found

    def _by_alias_only(self, target: str, found: str) -> bool:
        key = _norm(target)
        key = key[:-3] if key.endswith(".md") else key
        by_name = key in self._by_path or ("/" not in key and key in self._by_name)
        by_suffix = "/" in key and any(("/" + path_key).endswith("/" + key) for path_key in self._by_path)
        return not (by_name or by_suffix)

    def content_pages(self) -> list[PageInfo]:
        """Pages other than index.md, log.md and SCHEMA.md at the wiki's top level."""
        return [p for rel, p in self.pages.items() if rel not in SPECIAL_PAGES]

    def outgoing(self, rel: str) -> list[tuple[Link, str | None]]:
        return [(link, self.resolve(link.target) if link.target else rel) for link in self.pages[rel].links]

    def backlinks(self) -> dict[str, set[str]]:
        """For each page, the other pages linking to it."""
        inbound: dict[str, set[str]] = {rel: set() for rel in self.pages}
        for rel in self.pages:
            for _link, dest in self.outgoing(rel):
                if dest is not None and dest != rel and dest in inbound:
                    inbound[dest].add(rel)
        return inbound

    def link_counts(self, by_alias: bool = True) -> tuple[int, int]:
        """(links that resolve, all links) over every page; same-page [[#Heading]] links excluded."""
        total = resolved = 0
        for page in self.pages.values():
            for link in page.links:
                if not link.target:
                    continue
                total += 1
                resolved += self.resolve(link.target, by_alias) is not None
        return resolved, total
