"""A wiki page on disk: YAML frontmatter plus a markdown body split into `## ` sections."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import YAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import PlainScalarString

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
        out = io.StringIO()
        _yaml().dump(self.frontmatter, out)
        return f"---\n{out.getvalue().strip()}\n---\n\n{self.body}"


def _yaml() -> YAML:
    """A round-trip YAML reader and writer (one per call: the object keeps parse state).

    Round trip keeps what a person wrote in a page's frontmatter: key order, comments, flow or block lists
    and scalars as typed (`version: 1.10`, `zip: 01234`, `publish: yes` stay so). Text loracle writes is
    quoted wherever another reader could take it for something else (see _represent_text)."""
    rt = YAML()
    rt.Constructor, rt.Representer = _Constructor, _Representer
    rt.width = 1000
    rt.preserve_quotes = True
    rt.allow_duplicate_keys = True  # a repeated key is read (the first value), not taken for broken frontmatter
    return rt


class _Constructor(RoundTripConstructor):
    """Text a person wrote unquoted is written back unquoted (`publish: yes` stays as typed)."""

    def construct_yaml_str(self, node: Any) -> Any:
        value = super().construct_yaml_str(node)
        return PlainScalarString(value) if type(value) is str and node.style is None else value


class _Representer(RoundTripRepresenter):
    """Writes new text (a plain `str`) with _represent_text; what was read keeps its own style."""


_YAML11 = yaml.resolver.Resolver()
_Constructor.add_constructor("tag:yaml.org,2002:str", _Constructor.construct_yaml_str)


def _represent_text(representer: Any, value: str) -> Any:
    """Text holding an unprintable character or a space other than " " (a Unicode line break, a no-break space)
    is double-quoted: written raw, reading it back turns a line break into a space, or a no-break space alone
    as a key into no frontmatter at all. Text a YAML 1.1 reader (PyYAML, what loracle's sources read) would
    take for a bool, number or date (`yes`, `12:30`) is single-quoted, so every reader sees text."""
    unusual = any(not ch.isprintable() or (ch.isspace() and ch != " ") for ch in value)
    style = '"' if unusual else None
    if style is None and _YAML11.resolve(yaml.ScalarNode, value, (True, False)) != "tag:yaml.org,2002:str":
        style = "'"
    return representer.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Representer.add_representer(str, _represent_text)


def _represent_number(representer: Any, value: float) -> Any:
    """A new float in a form both YAML 1.1 and 1.2 read as a float: 1.1 wants a dot and a signed exponent,
    so `5e-324` (text to PyYAML) is written `5.0e-324`. Floats read from a page keep their own spelling."""
    if value != value or value in (float("inf"), float("-inf")):
        return representer.represent_float(value)
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if e:
        if "." not in mantissa:
            mantissa += ".0"
        if exponent[0] not in "+-":
            exponent = "+" + exponent
        text = f"{mantissa}e{exponent}"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


_Representer.add_representer(float, _represent_number)


def parse_page(text: str) -> Page:
    """Split a page into frontmatter and sections; a page with broken frontmatter keeps it as body text."""
    meta: dict[str, Any] = {}
    body = text
    if text.startswith("---"):
        lines = text.splitlines(keepends=True)
        for index in range(1, len(lines)):
            if lines[index].strip() in ("---", "..."):
                try:
                    loaded = _yaml().load("".join(lines[1:index])) or {}
                except YAMLError:
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
