"""Poses: the keypoint data model and its JSON format, estimators (DWPose, mediapipe, files),
OpenPose-style rendering, alignment of the target's motion to the source, and the source person's
pixels moved bone by bone (``--warp-person``).

The colour orders of rendered poses are defined here, once, free of heavy imports.
"""

from typing import Literal

ColorOrder = Literal["official", "standard"]  # the release's poses have red and blue swapped
PoseSource = Literal["file", "dwpose", "mediapipe"]  # where a pose stage's keypoints come from
AlignMethod = Literal["motioneditor", "linear", "none"]
HeightFrom = Literal["box", "skeleton"]  # a person's height: the box's, or the skeleton's
Anchor = Literal["ground", "median", "first", "target"]  # where the edit person stands
