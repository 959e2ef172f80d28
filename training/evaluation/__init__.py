"""Evaluation: metrics of a checkpoint with patient-level CIs per source, the source probe, plots, the report, and
comparisons of training variants under one protocol."""
