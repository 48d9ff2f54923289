"""The `memory` learner: each chunk of a document becomes a few memory tokens' key/value cache in one forward
pass (a PEFT prefix-tuning adapter), written by the network `loracle train-hypernet --design prefix` trains."""
