"""The `hypernet` learner: Doc-to-LoRA, a hypernetwork that writes a document into LoRA adapters in one pass.

config.py (the learner's options), learner.py (learn, route, answer, PEFT export), engine.py (the trained
network at use time), network.py (the Perceiver hypernetwork), reading.py (how the base model reads a
document), data.py and train.py (training by context distillation: `loracle train-hypernet`), checkpoint.py
and checkpoints/ (the network's format and the network shipped for the embedded model).
"""
