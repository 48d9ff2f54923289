"""The `playbook` learner: generate / reflect / curate loops growing a strategy playbook (config.py, learner.py)."""
