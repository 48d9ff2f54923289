"""loracle: let a local language model learn a folder of documents."""

__version__ = "0.1.0"
