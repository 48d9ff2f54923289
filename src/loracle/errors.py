"""User-facing errors: each carries one line that names the file or thing and the problem."""


class LoracleError(Exception):
    """An error the CLI prints as a single line (no traceback unless --debug)."""


class ModelLoadError(LoracleError):
    """The model path, file or id could not be loaded as a causal language model."""


class AdapterError(LoracleError):
    """An adapter is missing, malformed, or made for another base model."""


class DocumentError(LoracleError):
    """A source document cannot be read (missing, binary, bad encoding, empty, broken frontmatter)."""
