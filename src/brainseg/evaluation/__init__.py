"""Evaluation: inference, metrics, post-processing, paired statistics; the postprocess,
evaluate, predict stages."""
