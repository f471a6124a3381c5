"""What dooms an edit, found before sampling from its prepared inputs: masks that cover most of the
frame (compositing then keeps little of the source), an aligned skeleton far outside the frame, no
person found, the bundled puppet model on real footage. Said on stderr, in the report (``warnings``)
and on the report page; the edit still runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mfollow.edit.inputs import ClipSource, pose_points

MASK_COVER = 0.6  # a mask covering more of the frame than this, on average, leaves little to keep
OUTSIDE = 0.25  # a joint this far outside the frame (fraction of its side) is far outside
SEEN = 0.5  # a pose sequence with a person in fewer frames than this has none to speak of


def is_synthetic_pair(source: Path | None) -> bool:
    """Whether ``source`` is a video of the synthetic world (``mfollow synth`` writes ``pair.json``
    beside it): what the bundled models were trained on."""
    return source is not None and (source.parent / "pair.json").is_file()


def forecast(clip: ClipSource, *, bundled_model: bool, source: Path | None, puppet_segdit: bool = False) -> list[str]:
    """The warnings of an edit of ``clip`` (working-size inputs): each a sentence saying what is
    wrong and what to do. ``bundled_model``: the bundled tiny demo model runs; ``puppet_segdit``:
    M_e came from the bundled SegDiT; ``source``: the source path (a synthetic pair has
    ``pair.json`` beside it)."""
    found = []
    n = clip.n
    for name, label in (("edit_masks", "M_e (the edit person)"), ("source_masks", "M_r (the source person)")):
        cover = float(np.mean(getattr(clip, name).get(0, n)))
        if cover > MASK_COVER:
            found.append(
                f"{label} covers {cover:.0%} of the frame on average: compositing keeps little of the source's "
                "background; check the masks (mfollow report) or give your own (--source-masks / --edit-masks)"
            )
    for name, who in (("source_poses", "the source"), ("edit_poses", "the aligned edit poses")):
        poses = pose_points(getattr(clip, name), 0, n)
        if poses is None:
            continue  # pose images: no keypoints to look at
        seen = poses.seen("body")  # (F, 18)
        if seen.any(axis=1).mean() < SEEN:
            found.append(f"no person in most frames of {who}' poses: the edit has no one to move")
            continue
        if name == "edit_poses":
            xy = poses.pixels("body") / np.array([poses.width, poses.height])  # (F, 18, 2), 0..1 in frame
            far = ((xy < -OUTSIDE) | (xy > 1 + OUTSIDE)).any(axis=-1) & seen  # (F, 18)
            if far.any(axis=1).mean() >= SEEN:
                found.append(
                    "the aligned skeleton reaches far outside the frame in most frames (e.g. a full body aligned "
                    "to a half-body source): try another 'mfollow align' (--anchor, --method) or give --edit-poses"
                )
    real = not is_synthetic_pair(source)
    if puppet_segdit and real:
        found.append(
            "M_e came from the bundled SegDiT, trained on the synthetic puppets only: on real footage its "
            "masks miss the person; use --edit-mask-backend auto (the target's silhouette) or give --edit-masks"
        )
    if bundled_model and real:
        found.append(
            "the bundled tiny demo model knows only the synthetic puppets: on real footage it paints the "
            "puppet world; install the sd15 weights (docs/weights.md)"
        )
    return found
