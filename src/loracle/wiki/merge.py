"""Merging loracle's updates into pages a person may have edited, without overwriting their edits.

loracle remembers what it last wrote (see state.WikiState.written). A list section is merged line by
line: lines loracle wrote for this source are replaced, every other line (a person's, or another
source's) stays. A prose section is replaced only while it still holds exactly what loracle wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loracle.wiki.pages import Page, union_list
from loracle.wiki.state import WikiState


@dataclass
class MergeNotes:
    """Places where a person's edit was kept instead of loracle's new text (reported and logged)."""

    kept: list[str] = field(default_factory=list)


def merge_list_section(
    page: Page, rel: str, heading: str, source: str, new_lines: list[str], state: WikiState, after: str | None = None
) -> None:
    """Replace this source's lines in a bullet-list section; keep everything else in it."""
    section = page.section(heading)
    current = section.text.splitlines() if section is not None else []
    old = set(state.lines_written(rel, heading, source))
    kept = [line for line in current if line not in old]
    present = set(kept)
    merged = kept + [line for line in new_lines if line not in present]
    if section is not None or merged:
        page.set_section(heading, "\n".join(merged), after=after)
    state.record(rel, heading, source, new_lines)


def merge_prose_section(
    page: Page, rel: str, heading: str, new_text: str, state: WikiState, notes: MergeNotes, after: str | None = None
) -> None:
    """Write a prose section unless a person changed it since loracle last wrote it. A section that already
    holds exactly the new text is loracle's too (a crash may have written the page but not the state)."""
    section = page.section(heading)
    written = "\n".join(state.lines_written(rel, heading, "*"))
    if section is None or section.text.strip() in ("", written.strip(), new_text.strip()):
        page.set_section(heading, new_text, after=after)
        state.record(rel, heading, "*", new_text.splitlines())
    else:
        notes.kept.append(f"{rel}#{heading}")


def merge_summary(page: Page, rel: str, summary: str, state: WikiState, notes: MergeNotes) -> None:
    """The frontmatter one-liner follows the same rule as a prose section."""
    current = str(page.frontmatter.get("summary") or "")
    written = "\n".join(state.lines_written(rel, "frontmatter.summary", "*"))
    if current in ("", written, summary):
        page.frontmatter["summary"] = summary
        state.record(rel, "frontmatter.summary", "*", [summary])
    else:
        notes.kept.append(f"{rel}#summary")


def merge_frontmatter(page: Page, fields: dict[str, object], lists: dict[str, list[str]]) -> None:
    """Set scalar fields a page lacks (a person's values win), union list fields (their order first).

    A person's keys keep their order and their lists are extended in place (comments on items stay); a
    single value (`tags: mine`) becomes a list only when there is something to add to it."""
    meta = page.frontmatter
    for key, value in fields.items():
        if key not in meta or meta[key] in (None, ""):
            meta[key] = value
    for key, values in lists.items():
        had = meta.get(key)
        mine = had if isinstance(had, list) else ([had] if had else [])
        added = union_list(mine, values)[len(mine) :]
        if isinstance(had, list):
            had.extend(added)
        elif added:
            meta[key] = [*mine, *added]


def drop_from_list(page: Page, key: str, value: str) -> None:
    """Take `value` out of the frontmatter list `key` in place (a person's other items, order and comments stay)."""
    items = page.frontmatter.get(key)
    if isinstance(items, list):
        items[:] = [item for item in items if item != value]
    elif items == value:
        page.frontmatter[key] = []
