"""Models: the networks, what their output channels mean, the batched-logits loop."""
