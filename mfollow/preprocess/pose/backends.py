"""Which pose estimator runs when the user leaves the choice to mfollow (``--pose-backend auto``).

``auto``: DWPose (the paper's estimator) when its ONNX models are installed and onnxruntime
imports; else the offline mediapipe backend when mediapipe is installed (its wheel ships its
models); else an error naming both ways. Deciding costs no model load: only file look-ups and
``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mfollow.runtime.errors import WeightsError

PoseBackend = Literal["dwpose", "mediapipe"]
PoseChoice = Literal["auto", "dwpose", "mediapipe"]

GET_DWPOSE = "pip install 'mfollow[pose]' and run 'mfollow weights download dwpose'"
GET_MEDIAPIPE = "pip install 'mfollow[mediapipe]' (offline; docs/preprocessing.md has a slim install)"


@dataclass(frozen=True)
class PoseBackendChoice:
    backend: PoseBackend
    note: str | None = None  # one line for people: what ``auto`` picked and how to get the other


def dwpose_available(weights: Path | None = None) -> bool:
    """DWPose can run: its models are installed (resolver order) and onnxruntime imports."""
    from mfollow.weights.registry import locate

    return locate("dwpose", weights).path is not None and importlib.util.find_spec("onnxruntime") is not None


def mediapipe_available() -> bool:
    return importlib.util.find_spec("mediapipe") is not None


def choose_pose_backend(choice: PoseChoice, weights: Path | None = None) -> PoseBackendChoice:
    """The backend for ``choice``. An explicit choice is taken as given (a missing DWPose is
    reported when its stage resolves the weights, exit 3).

    Raises:
        WeightsError: ``auto`` and neither estimator is installed; ``mediapipe`` and it is not.
    """
    if choice == "dwpose":
        return PoseBackendChoice("dwpose")
    if choice == "mediapipe":
        if not mediapipe_available():
            raise WeightsError("--pose-backend mediapipe: mediapipe is not installed", hint=GET_MEDIAPIPE)
        return PoseBackendChoice("mediapipe")
    if dwpose_available(weights):
        return PoseBackendChoice("dwpose")
    if mediapipe_available():
        return PoseBackendChoice(
            "mediapipe", f"pose: mediapipe (BlazePose), as DWPose is not installed; for DWPose: {GET_DWPOSE}"
        )
    raise WeightsError(
        "no pose estimator installed (DWPose or mediapipe)", hint=f"either {GET_DWPOSE}, or {GET_MEDIAPIPE}"
    )
