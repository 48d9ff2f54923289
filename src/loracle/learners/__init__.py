"""Learners: ways for the model to learn documents (see base.Learner)."""
