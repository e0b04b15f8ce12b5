"""Evaluation: inference, metrics, post-processing; the postprocess, evaluate, predict stages."""
