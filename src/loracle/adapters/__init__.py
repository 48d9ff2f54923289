"""Adapters on disk: PEFT format, manifests, store, merge and export."""
