"""Training: slices and augmentation, sampling, losses, validation, state, the train stage."""
