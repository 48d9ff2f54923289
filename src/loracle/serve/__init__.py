"""The server: an OpenAI-compatible API with per-request adapters, the knowledge-base API and the web page."""
