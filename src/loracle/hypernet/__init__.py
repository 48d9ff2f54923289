"""Doc-to-LoRA: a hypernetwork that turns a document into a LoRA adapter in one forward pass.

The frozen base model reads the document; a Perceiver-style aggregator cross-attends from a few learned
latents to its per-layer activations; per-layer heads emit LoRA A and B for the target modules. Long
documents are read in chunks, one adapter per chunk, and the chunks that match a question are routed in.
"""
