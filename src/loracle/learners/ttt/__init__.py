"""The `ttt` learner: test-time training of a gated LoRA per document on self-study data.

config.py (options), selfstudy.py (the training pairs), training.py (the training loop over cached upper-layer
states), learner.py (routing, recite-then-read answering, checkpoints, PEFT export); gating.py, upper.py and
vocab.py are the helpers only this learner uses.
"""
