"""The `kstore` learner: a hidden-state store whose nearest neighbours modulate the logits (config.py, learner.py)."""
