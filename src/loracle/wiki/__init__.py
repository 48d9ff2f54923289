"""The LLM wiki: raw sources -> interlinked markdown pages the model writes and keeps current.

init_kb creates a knowledge base; ingest adds or updates sources; query answers with citations; lint
checks links, the index, duplicates and contradictions; wiki_status says what is stale.
"""

from loracle.wiki.ingest import IngestReport, SourceResult, ingest
from loracle.wiki.layout import init_kb
from loracle.wiki.links import LinkGraph
from loracle.wiki.lint import Finding, LintReport, lint
from loracle.wiki.query import QueryAnswer, query
from loracle.wiki.status import WikiStatus, wiki_status

__all__ = [
    "Finding",
    "IngestReport",
    "LinkGraph",
    "LintReport",
    "QueryAnswer",
    "SourceResult",
    "WikiStatus",
    "ingest",
    "init_kb",
    "lint",
    "query",
    "wiki_status",
]
