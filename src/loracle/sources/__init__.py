"""Sources: files on disk -> `Document`s (markdown, text, HTML, PDF), chunks for retrieval, a folder watcher."""

from loracle.sources.chunking import Chunk, chunk_document
from loracle.sources.files import SUPPORTED_SUFFIXES, read_document, read_text, split_frontmatter
from loracle.sources.folder import SourceError, iter_source_files, read_folder, source_id

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Chunk",
    "SourceError",
    "chunk_document",
    "iter_source_files",
    "read_document",
    "read_folder",
    "read_text",
    "source_id",
    "split_frontmatter",
]
