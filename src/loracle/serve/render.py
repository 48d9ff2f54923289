"""Markdown to safe HTML for the web page, with [[wikilinks]] as links to the pages they name.

Pages are written by a model from untrusted documents, so raw HTML in them is escaped, not rendered
(markdown-it's `html` option off), and markdown-it refuses javascript: and data: link targets.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline

from loracle.documents import WIKILINK_RE, slugify

#: maps a wikilink target (a title or id) to a page id, or None when no such page exists
Resolver = Callable[[str], str | None]


def render_markdown(text: str, resolve: Resolver) -> str:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    md.inline.ruler.before("link", "wikilink", _wikilink_rule(resolve))
    return md.render(text)


def default_resolver(page_ids: set[str]) -> Resolver:
    """Targets resolve by their slug (how pages are named on disk)."""

    def resolve(target: str) -> str | None:
        slug = slugify(target)
        return slug if slug in page_ids else None

    return resolve


def _wikilink_rule(resolve: Resolver) -> Callable[[StateInline, bool], bool]:
    def rule(state: StateInline, silent: bool) -> bool:
        if not state.src.startswith("[[", state.pos):
            return False
        match = WIKILINK_RE.match(state.src, state.pos)
        if match is None:
            return False
        if not silent:
            target = match.group(1).strip()
            label = (match.group(3) or target).strip()
            page_id = resolve(target)
            token = state.push("html_inline", "", 0)
            if page_id is None:
                token.content = f'<span class="wikilink missing" title="no such page">{escape(label)}</span>'
            else:
                anchor = f"#{slugify(match.group(2))}" if match.group(2) else ""
                token.content = (
                    f'<a class="wikilink" data-page="{escape(page_id)}" '
                    f'href="#/page/{escape(page_id)}{escape(anchor)}">{escape(label)}</a>'
                )
        state.pos = match.end()
        return True

    return rule
