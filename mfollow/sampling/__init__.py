"""Sampling: the paper's two-branch sampler (Algorithm 1), the release's beside it, the
consistency-guidance losses (Eqs. 2-7), long-video windows and their blending.

The choice sets and window defaults every layer above uses are defined here, once, free of heavy
imports (the command line builds its option types from them).
"""

from typing import Literal

GuidanceMode = Literal["paper", "official", "none"]  # consistency guidance: Algorithm 1, the release's, off
BlendScheme = Literal["tent", "mean", "ramp"]  # how overlapping windows are blended per frame
WINDOW = 24  # frames per window (the paper's clip length)
OVERLAP = 8  # frames shared by neighbouring windows
