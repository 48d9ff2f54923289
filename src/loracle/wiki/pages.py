"""A wiki page on disk: YAML frontmatter plus a markdown body split into `## ` sections."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loracle.atomic import write_text_atomic
from loracle.confine import read_text_in

_HEADING_RE = re.compile(r"^## +(.+?)\s*#*\s*$")
_FENCE_RE = re.compile(r"^(```|~~~)")


@dataclass
class Section:
    heading: str  # "" for the text before the first `## ` heading
    text: str  # the section's lines after its heading, without surrounding blank lines


@dataclass
class Page:
    frontmatter: dict[str, Any] = field(default_factory=dict)
    sections: list[Section] = field(default_factory=list)

    def section(self, heading: str) -> Section | None:
        for section in self.sections:
            if section.heading.lower() == heading.lower():
                return section
        return None

    def set_section(self, heading: str, text: str, after: str | None = None) -> None:
        """Replace a section's text, or add the section (after `after`, or at the end)."""
        existing = self.section(heading)
        if existing is not None:
            existing.text = text.strip("\n")
            return
        new = Section(heading, text.strip("\n"))
        if after is not None:
            for index, section in enumerate(self.sections):
                if section.heading.lower() == after.lower():
                    self.sections.insert(index + 1, new)
                    return
        self.sections.append(new)

    @property
    def body(self) -> str:
        parts = []
        for section in self.sections:
            if section.heading:
                parts.append(f"## {section.heading}\n\n{section.text}".rstrip())
            elif section.text.strip():
                parts.append(section.text.rstrip())
        return "\n\n".join(parts) + "\n"

    def render(self) -> str:
        if not self.frontmatter:
            return self.body
        meta = yaml.dump(
            self.frontmatter, Dumper=_FrontmatterDumper, sort_keys=False, allow_unicode=True, width=1000
        ).strip()
        return f"---\n{meta}\n---\n\n{self.body}"


class _FrontmatterDumper(yaml.SafeDumper):
    """Safe YAML, but text holding an unprintable character or a space other than " " (a Unicode line break,
    a no-break space) is double-quoted: PyYAML writes those raw in other styles, and reading them back turns
    a line break into a space, or a no-break space alone as a key into no frontmatter at all."""


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    unusual = any(not ch.isprintable() or (ch.isspace() and ch != " ") for ch in value)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if unusual else None)


_FrontmatterDumper.add_representer(str, _represent_text)


def parse_page(text: str) -> Page:
    """Split a page into frontmatter and sections; a page with broken frontmatter keeps it as body text."""
    meta: dict[str, Any] = {}
    body = text
    if text.startswith("---"):
        lines = text.splitlines(keepends=True)
        for index in range(1, len(lines)):
            if lines[index].strip() in ("---", "..."):
                try:
                    loaded = yaml.safe_load("".join(lines[1:index])) or {}
                except yaml.YAMLError:
                    loaded = None
                if isinstance(loaded, dict):
                    meta, body = loaded, "".join(lines[index + 1 :])
                break
    return Page(meta, split_sections(body))


def split_sections(body: str) -> list[Section]:
    sections: list[Section] = []
    heading, lines, in_fence = "", [], False
    for line in body.splitlines():
        if _FENCE_RE.match(line.strip()):
            in_fence = not in_fence
        match = None if in_fence else _HEADING_RE.match(line)
        if match:
            sections.append(Section(heading, "\n".join(lines).strip("\n")))
            heading, lines = match.group(1).strip(), []
        else:
            lines.append(line)
    sections.append(Section(heading, "\n".join(lines).strip("\n")))
    return [s for s in sections if s.heading or s.text.strip()]


def read_page(path: Path) -> Page:
    return parse_page(path.read_text(encoding="utf-8"))


def read_page_in(folder: Path, rel: str) -> Page:
    """The page `rel` of the wiki `folder`, never read through a link out of it (see loracle.confine)."""
    return parse_page(read_text_in(folder / rel, folder))


def write_page(path: Path, page: Page) -> None:
    write_text_atomic(path, page.render())


def union_list(existing: Any, new: list[str]) -> list[str]:
    """Existing list items first (a person's order is kept), then new ones not already there (case-insensitive)."""
    items = [str(x) for x in existing] if isinstance(existing, list) else ([str(existing)] if existing else [])
    seen = {x.lower() for x in items}
    for item in new:
        if item.lower() not in seen:
            items.append(item)
            seen.add(item.lower())
    return items
