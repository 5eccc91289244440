"""Experiment layer above single runs: sweeps (`sweep`), compute accounting (`flops`), sweep reports (`report`)."""
