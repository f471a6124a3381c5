"""Sampling: the consistency-guidance losses, the two-branch sampler, long-video windows."""
