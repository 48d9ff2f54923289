"""The `ttt` learner: test-time training of a LoRA per document that answers questions about it.

config.py (options), selfstudy.py (the questions and answers about a document), general.py (general prompts
kept as the base model answers them), training.py (the training loop over cached upper-layer states),
learner.py (routing, answering, checkpoints, PEFT export); gating.py (what an adapter reads), upper.py and
vocab.py are the helpers only this learner uses.
"""
