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

#: The alignment's defaults, the authors' way measured on their real cases (docs/benchmarks.md,
#: real cases): the target person stays where the target stands, scaled by the source/target
#: height ratio; no retargeting onto the source's bones, no following of the source's camera.
ALIGN_DEFAULTS = {"method": "motioneditor", "height": "skeleton", "anchor": "target", "follow_camera": False,
                  "retarget": False}  # fmt: skip
#: The synthetic puppet world's convention (its ground truth anchors the edit puppet at the source
#: puppet and retargets it): what the bundled tiny model, trained there, is aligned with.
PUPPET_ALIGN = {"anchor": "median", "follow_camera": True, "retarget": True}
