"""The `context` learner: retrieval of learned chunks into the prompt (config.py, learner.py)."""
