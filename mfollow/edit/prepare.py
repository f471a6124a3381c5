"""The preprocessing an edit needs when poses and masks are not given: run or reuse the pose,
align and mask stages of a project (docs/method.md, §1) and hand their outputs to the edit.

Reuse: with the ``auto`` choices (the defaults), a stage already in the project that is fresh for
these inputs is used whatever backend or settings made it (``mfollow pose --backend mediapipe -p
DIR`` by hand, then ``mfollow edit ... -p DIR``); otherwise the stage runs with the chosen backend
(:func:`mfollow.preprocess.pose.backends.choose_pose_backend`). Each stage is a cache hit when its key is
unchanged, so a rerun costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfollow.edit.choices import EditMaskChoice
from mfollow.preprocess.pose.backends import PoseChoice, choose_pose_backend
from mfollow.runtime.errors import UsageError, WeightsError


@dataclass(frozen=True)
class StagePlan:
    """How to make what the edit needs. ``weights``: the folder searched first for DWPose/SegDiT."""

    pose_backend: PoseChoice = "auto"
    align: dict[str, Any] = field(default_factory=dict)  # the align stage's settings over its defaults
    edit_mask_backend: EditMaskChoice = "auto"  # auto: a fresh mask stage, else hull
    source_masks: Path | None = None  # M_r from files; None: mediapipe segments the source
    target_masks: Path | None = None  # for edit_mask_backend "warp"
    weights: Path | None = None

    def check(self) -> None:
        if self.edit_mask_backend == "warp" and self.target_masks is None:
            raise UsageError("--edit-mask-backend warp needs --target-masks (the target person's masks)")


def _fresh(project: Path, stage: str, video: Path | None = None) -> dict[str, Any] | None:
    """The manifest record of ``stage`` when it is fresh (and made from ``video``), else None."""
    from mfollow.io.hashing import fingerprint
    from mfollow.preprocess.project import Project

    if not (project / "mfollow.json").is_file():
        return None
    proj = Project.read(project)
    state = {s.name: s.state for s in proj.status()}
    rec = proj.manifest["stages"].get(stage)
    if rec is None or state.get(stage) != "fresh":
        return None
    if video is not None:
        recorded = rec["document"]["inputs"].get("video", {}).get("sha256")
        if recorded != fingerprint(video).sha256:
            return None
    return rec


def prepare_stages(
    project: Path,
    source: Path,
    target: Path | None,
    plan: StagePlan,
    note: Callable[[str], None] | None = None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Run or reuse the stages; returns the edit's inputs (``source_poses``, ``edit_poses``,
    ``source_masks``, ``edit_masks``) and a report: each stage's cache decision (``hit``, ``miss``
    or ``reused``) and the backends that made the poses and masks. Without ``target`` the target's
    poses must be fresh in the project already."""
    from mfollow.preprocess.stages import align_stage, mask_stage, pose_stage, project_inputs

    plan.check()
    reusable_mask = plan.edit_mask_backend == "auto" and plan.source_masks is None
    if not (reusable_mask and _fresh(project, "mask") is not None):  # found before any stage runs
        from mfollow.preprocess.pose.backends import GET_MEDIAPIPE, mediapipe_available

        if plan.source_masks is None and not mediapipe_available():
            raise WeightsError(
                "M_r: segmenting the source needs mediapipe", hint=f"{GET_MEDIAPIPE}, or --source-masks DIR"
            )
        if plan.edit_mask_backend == "segdit":
            from mfollow.weights.registry import resolve

            resolve("segdit", plan.weights)
    cache: dict[str, str] = {}
    backends: dict[str, str] = {}
    chosen = None
    for role, video in (("source", source), ("target", target)):
        name = f"pose-{role}"
        rec = _fresh(project, name, video) if plan.pose_backend == "auto" or video is None else None
        if rec is None and video is None:
            raise UsageError(
                f"{project}: no fresh target poses; pass TGT to estimate them, or --source-poses/--edit-poses"
            )
        if rec is not None:
            cache[name], backends[role] = "reused", rec["document"]["params"]["backend"]
            continue
        if chosen is None:
            chosen = choose_pose_backend(plan.pose_backend, plan.weights)
            if chosen.note and note is not None:
                note(chosen.note)
        assert video is not None
        r = pose_stage(project, video, role, backend=chosen.backend, weights=plan.weights)
        cache[name], backends[role] = r["cache"], chosen.backend
    if _fresh(project, "align") is not None:  # made by hand (mfollow align) or by an earlier edit: kept
        cache["align"] = "reused"
    else:
        from mfollow.preprocess.pose.align import AlignSettings

        cache["align"] = align_stage(project, AlignSettings(**plan.align))["cache"]
    rec = _fresh(project, "mask") if reusable_mask else None
    if rec is not None:
        cache["mask"] = "reused"
        params = rec["document"]["params"]
    else:
        # auto: the target's own silhouette moved by the alignment (the authors' M_e has it), where
        # the target can be segmented; else the edit pose's hull
        from mfollow.preprocess.pose.backends import mediapipe_available

        segmentable = target is not None and mediapipe_available()
        edit_backend = plan.edit_mask_backend
        if edit_backend == "auto":
            edit_backend = "warp" if plan.target_masks is not None or segmentable else "hull"
        r = mask_stage(
            project, source_masks=plan.source_masks, source_video=None if plan.source_masks else source,
            edit_backend=edit_backend, target_masks=plan.target_masks,  # type: ignore[arg-type]
            target_video=target if plan.target_masks is None else None, weights_dir=plan.weights,
        )  # fmt: skip
        cache["mask"] = r["cache"]
        params = {"source_backend": "file" if plan.source_masks else "mediapipe", "edit_backend": edit_backend}
    staged = project_inputs(project)
    assert staged is not None  # every stage just ran or was fresh
    report = {
        "stages": cache,
        "pose_backend": backends,
        "mask_backend": {"source": params["source_backend"], "edit": params["edit_backend"]},
    }
    return staged, report
