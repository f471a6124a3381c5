"""Writing a synthetic pair to a folder (what ``mfollow synth`` makes).

Layout of ``OUT_DIR``::

    source.mp4  target.mp4  edit_gt.mp4          H.264, the pair's fps, frame i at pts i
    source_poses.json  target_poses.json  edit_poses.json     mfollow-poses v1 (docs/pose-format.md)
    source_masks/  target_masks/  edit_masks/    frame_00000.png ...: 8-bit 0/255 person masks
                                                 (source = M_r, edit = M_e)
    pair.json                                    what was generated (seed, motions, camera, ...)

Everything is first written to a staging folder inside ``OUT_DIR`` and moved into place only when
complete, so an interrupted run never leaves a half-written pair behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from mfollow.io.video import VideoWriter
from mfollow.preprocess.masks.files import mask_name, write_mask
from mfollow.runtime.errors import MediaError
from mfollow.synth.world import Pair, Role, mask_box
from mfollow.version import __version__

VIDEO_NAMES: dict[Role, str] = {"source": "source.mp4", "target": "target.mp4", "edit": "edit_gt.mp4"}
POSE_NAMES: dict[Role, str] = {"source": "source_poses.json", "target": "target_poses.json", "edit": "edit_poses.json"}
MASK_DIRS: dict[Role, str] = {"source": "source_masks", "target": "target_masks", "edit": "edit_masks"}
ROLES: tuple[Role, ...] = ("source", "target", "edit")


def write_pair(
    pair: Pair,
    out_dir: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    roles: tuple[Role, ...] = ROLES,
) -> dict[str, object]:
    """Render every frame of the pair's videos (``roles``: by default all three) and write the
    folder layout above (the files of those roles, and ``pair.json``).

    Existing files of the same names in ``out_dir`` are replaced; other files are left alone.
    Returns a JSON-ready report (paths and the pair's description).

    Raises:
        MediaError: ``out_dir`` cannot be created or written.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = out_dir / f".synth-staging-{secrets.token_hex(4)}"
        staging.mkdir()
    except OSError as exc:
        raise MediaError(f"{out_dir}: cannot write here ({exc.strerror or exc})") from exc
    total, done = len(roles) * pair.frames, 0
    time_base = 1 / Fraction(pair.fps)
    try:
        for role in roles:
            video = pair.video(role)
            masks = staging / MASK_DIRS[role]
            masks.mkdir()
            boxes = np.empty((pair.frames, 4))
            with VideoWriter(
                staging / VIDEO_NAMES[role], pair.size, pair.size, time_base, rate_hint=pair.fps
            ) as writer:
                for f in range(pair.frames):
                    frame = video.render(f)
                    writer.write(frame.rgb, f)
                    write_mask(masks / mask_name(f), frame.mask)
                    boxes[f] = mask_box(frame.mask)
                    done += 1
                    if progress is not None:
                        progress(done, total)
            video.poses(boxes).save(staging / POSE_NAMES[role])
        report = {"mfollow_version": __version__, **pair.describe()}
        (staging / "pair.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        _move_into_place(staging, out_dir)
    except OSError as exc:
        raise MediaError(f"{out_dir}: writing the pair failed ({exc.strerror or exc})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    names = [name for r in roles for name in (VIDEO_NAMES[r], POSE_NAMES[r], MASK_DIRS[r])]
    files = {name: str(out_dir / name) for name in (*names, "pair.json")}
    return {"out_dir": str(out_dir), "files": files, **report}


def _move_into_place(staging: Path, out_dir: Path) -> None:
    for entry in sorted(staging.iterdir()):
        target = out_dir / entry.name
        if entry.is_dir():
            if target.exists():
                old = out_dir / f".{entry.name}.old-{secrets.token_hex(4)}"
                os.rename(target, old)
                os.rename(entry, target)
                with contextlib.suppress(OSError):
                    shutil.rmtree(old)
            else:
                os.rename(entry, target)
        else:
            os.replace(entry, target)
