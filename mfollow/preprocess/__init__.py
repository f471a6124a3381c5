"""Preparing an edit's inputs, cached per project: the project directory and its lock, the stages
(pose, align, mask), pose estimation, rendering and alignment (:mod:`mfollow.preprocess.pose`), and
person masks (:mod:`mfollow.preprocess.masks`).

The choice sets of the stages are defined here, free of heavy imports.
"""

from typing import Literal

Role = Literal["source", "target"]  # whose video a pose stage reads
EditMaskSource = Literal["hull", "warp", "file", "segdit"]  # how the mask stage makes M_e
