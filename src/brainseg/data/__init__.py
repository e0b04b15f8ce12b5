"""Data: layouts, sources, labels, preprocessing, the synthetic cohort; download to split."""
