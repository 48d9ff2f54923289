"""Sources: files on disk -> `Document`s."""

from loracle.sources.files import read_document

__all__ = ["read_document"]
