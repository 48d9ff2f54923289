"""A new knowledge base on disk, and where each kind of wiki page lives."""

from __future__ import annotations

from pathlib import Path

from loracle.atomic import write_text_atomic
from loracle.config import CONFIG_FILE
from loracle.errors import LoracleError
from loracle.kb import KBPaths

#: page type -> folder under wiki/ (file stems are unique across the wiki, so [[stem]] resolves anywhere)
FOLDERS = {"source": "sources", "entity": "entities", "concept": "concepts", "answer": "answers"}
TYPE_HEADINGS = {"source": "Sources", "entity": "Entities", "concept": "Concepts", "answer": "Answers"}
INDEX_START = "<!-- loracle:index:start -->"
INDEX_END = "<!-- loracle:index:end -->"
REMOVED_CALLOUT = "> [!warning] Source removed"  # starts the warning on a page whose source was removed
UNSUPPORTED = "unsupported"  # the frontmatter `status` of such a page, unless a person set a status of their own

CONFIG_TEMPLATE = """\
# loracle knowledge base. Every setting has a default; see `loracle --help`.

[model]
base = "embedded"

# The writer LLM. Empty base_url = the local model above. Any OpenAI-compatible endpoint works, e.g.
# Ollama: base_url = "http://localhost:11434/v1", model = "qwen2.5:3b"
[llm.fast]
base_url = ""
model = ""

[llm.writer]
base_url = ""
model = ""
"""

INDEX_TEMPLATE = f"""\
---
title: Index
type: index
---

# Index

Every page of this wiki, grouped by type, with a one-line summary. loracle rewrites the part between
the markers; write your own notes above or below them.

{INDEX_START}
{INDEX_END}
"""

LOG_TEMPLATE = """\
---
title: Log
type: log
---

# Log

What happened to this wiki, newest last. Each entry starts `## [YYYY-MM-DD] action | Title`.
"""

SCHEMA_TEXT = """\
---
title: Schema
type: schema
---

# Wiki schema

The conventions loracle (and you) follow in this wiki. The raw sources in `raw/` are never changed;
everything here is derived from them and kept current.

## Pages
- `sources/<name>-summary.md`: one per raw source: `## Summary` (the source's own sentences, shortened only
  by deletions that keep their meaning), `## Entities`, `## Concepts`, `## Source`.
- `entities/<name>.md`: a person, place, organisation or named thing: `## Description` (a source sentence
  that says what it is), `## Facts` (per source, the sentences that name it, each with a link to the
  source's summary page and the raw line it came from), `## Related` (pages named beside it).
- `concepts/<name>.md`: an idea or topic the source uses more than once, shaped like an entity page.
- `answers/<name>.md`: an answer filed with `loracle query --save`, with its citations.
- `index.md`: every page, grouped by type, one line each: `- [[stem|Title]]: one-line summary`.
- `log.md`: append-only: `## [YYYY-MM-DD] ingest | Title` (also `remove` and `query` entries).

## Frontmatter (YAML)
`title`, `type` (source, entity, concept, answer), `summary` (one line), `aliases` (other names; lists are
merged, never replaced), `tags`, `sources` (raw files behind the page), `updated` (date).

## Links
Obsidian wikilinks by file name: `[[stem|Title]]` (Obsidian resolves a link by file name, not by alias;
each page's title is also one of its `aliases`, so typing the title finds it). Every link points at a page
that exists; links go both ways (a summary links its entities, each entity links back to the summary). A
link quoted from a source points at the page of that name, or is plain text when there is none.

## Claims
Every claim cites its source: a summary page and a raw line, e.g. `raw/notes.md:12`. Every sentence loracle
writes is checked for support in its source (its content words and numbers within two source sentences,
no negation or hedge added or dropped); one a writer endpoint wrote that fails is marked
`^[not found in the source]`. Names and concepts must occur in the source text. When a source is
removed, claims only it supported are flagged with `> [!warning]`; `loracle lint` reports contradictions
and superseded claims with their evidence.

## Editing by hand
You may edit any page. loracle merges its updates into yours: it patches its own sections and lines,
unions frontmatter lists, keeps your own frontmatter keys (their order, values and comments), and never
overwrites text you changed (it logs what it kept instead).
"""


def init_kb(root: Path) -> KBPaths:
    """Create a knowledge base in `root` (which may exist); files already there are kept."""
    root = root.expanduser()
    if root.exists() and not root.is_dir():
        raise LoracleError(f"{root}: exists and is not a folder")
    kb = KBPaths(root.resolve())
    for folder in (kb.raw, kb.wiki, kb.state, *(kb.wiki / f for f in FOLDERS.values())):
        folder.mkdir(parents=True, exist_ok=True)
    for path, text in (
        (kb.root / CONFIG_FILE, CONFIG_TEMPLATE),
        (kb.wiki / "index.md", INDEX_TEMPLATE),
        (kb.wiki / "log.md", LOG_TEMPLATE),
        (kb.wiki / "SCHEMA.md", SCHEMA_TEXT),
    ):
        if not path.exists():
            write_text_atomic(path, text)
    return kb


def page_rel(page_type: str, stem: str) -> str:
    return f"{FOLDERS[page_type]}/{stem}.md"
