"""Synthetic source/target/ground-truth-edit triples with exact poses and masks.

A :class:`Pair` is fully determined by a seed and a few options (no global RNG):

- **source** = puppet A doing motion 1 on background B, seen through camera path C;
- **target** = puppet D (other look, proportions, size and place) doing motion 2 on its own
  background, static camera;
- **edit** (ground truth) = puppet A doing motion 2 — the same joint angles on A's proportions,
  root motion scaled to A's height and anchored at A's place — on B through C.

Because motions are joint angles and root offsets in units of the puppet's height, the edit is the
exact retargeting of the target's motion to the source puppet; with identical motions the edit
equals the source frame for frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cached_property
from typing import Literal

import numpy as np

from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.synth.motions import KINDS, Motion
from mfollow.synth.render import Appearance, draw_puppet, make_background, puppet_parts, view_background
from mfollow.synth.skeleton import Proportions, Skeleton, forward

CameraKind = Literal["pan", "zoom", "shake", "none"]
CAMERAS: tuple[CameraKind, ...] = ("pan", "zoom", "shake", "none")
Role = Literal["source", "target", "edit"]
WORLD = 2  # the background world is WORLD x the frame size on each side


@dataclass(frozen=True)
class Puppet:
    """A character: proportions, look, height and pelvis anchor in world pixels."""

    props: Proportions
    look: Appearance
    height: float
    anchor: tuple[float, float]

    @classmethod
    def sample(cls, rng: np.random.Generator, size: int, scale: tuple[float, float], x_range: float) -> Puppet:
        props = Proportions.sample(rng)
        height = size * rng.uniform(*scale)
        cx = cy = WORLD * size / 2
        # feet a little above the bottom of the first view; pelvis above them by the leg length
        x = cx + rng.uniform(-x_range, x_range) * size
        y = cy + 0.40 * size - (props.thigh + props.shin) * height
        return cls(props, Appearance.sample(rng), float(height), (float(x), float(y)))


@dataclass(frozen=True)
class Scene:
    """A background world texture and a camera path (F, 3) of (cx, cy, zoom) per frame."""

    world: np.ndarray = field(repr=False)
    camera: np.ndarray = field(repr=False)
    camera_kind: CameraKind = "none"


def camera_path(kind: CameraKind, frames: int, fps: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """(F, 3) camera centres (world pixels) and zoom factors for ``kind``."""
    c = WORLD * size / 2
    s = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    ease = 0.5 - 0.5 * np.cos(np.pi * s)  # smooth start and stop
    cam = np.tile(np.array([c, c, 1.0]), (frames, 1))
    if kind == "pan":
        direction = rng.choice([-1.0, 1.0])
        cam[:, 0] += direction * size * rng.uniform(0.15, 0.3) * (ease - 0.5)
        cam[:, 1] += size * rng.uniform(-0.05, 0.05) * (ease - 0.5)
    elif kind == "zoom":
        z0, z1 = (1.0, rng.uniform(1.2, 1.4)) if rng.random() < 0.5 else (rng.uniform(1.2, 1.4), 1.0)
        cam[:, 2] = z0 + (z1 - z0) * ease
    elif kind == "shake":
        t = np.arange(frames) / fps
        for axis in (0, 1):
            for k in range(3):  # a few incommensurate sinusoids look like hand-held jitter
                f = rng.uniform(1.5, 6.0)
                cam[:, axis] += size * 0.012 / (k + 1) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    elif kind != "none":
        raise ValueError(f"unknown camera {kind!r}; choose from {', '.join(CAMERAS)}")
    return cam


@dataclass(frozen=True)
class RenderedFrame:
    rgb: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) bool: exactly the pixels the puppet painted


class PuppetVideo:
    """One puppet doing one motion in one scene: skeletons for every frame, frames on demand."""

    def __init__(self, puppet: Puppet, motion: Motion, scene: Scene, frames: int, fps: Fraction, size: int) -> None:
        self.puppet, self.motion, self.scene = puppet, motion, scene
        self.frames, self.fps, self.size = frames, fps, size

    @cached_property
    def skeleton(self) -> Skeleton:
        """Joint positions in image pixels: world FK, then the camera transform per frame."""
        t = np.arange(self.frames) / float(self.fps)
        cam = self.scene.camera
        zoom = cam[:, 2]
        # image = (world - camera centre) * zoom + frame centre; FK is linear in root and height,
        # so running it on the transformed root and zoomed height is the exact transform.
        root = (np.array(self.puppet.anchor)[None, :] - cam[:, :2]) * zoom[:, None] + self.size / 2
        return forward(self.motion.angles(t), self.puppet.props, root, self.puppet.height * zoom)

    def plate(self, f: int) -> np.ndarray:
        """The clean background plate of frame ``f``: (S, S, 3) uint8, what :meth:`render` paints
        the puppet on (the same camera view, no puppet)."""
        return view_background(self.scene.world, self.scene.camera[f], self.size, self.size)

    def render(self, f: int, part_ids: np.ndarray | None = None) -> RenderedFrame:
        """Frame ``f``: the background view with the puppet painted on it."""
        canvas = self.plate(f)
        parts = puppet_parts(self.skeleton, f)
        mask = draw_puppet(canvas, parts, self.puppet.look, float(self.skeleton.height_px[f]), part_ids)
        return RenderedFrame(canvas, mask)

    def poses(self, boxes: np.ndarray | None = None) -> PoseSequence:
        """Ground-truth keypoints, normalised; points outside the frame get score 0.

        ``boxes`` (F, 4) are the person boxes (from :func:`mask_box`); by default the box of the
        keypoints is used.
        """
        sk, n = self.skeleton, float(self.size)

        def pack(points: np.ndarray) -> np.ndarray:
            xy = points / n
            inside = ((xy >= 0) & (xy < 1)).all(axis=-1)
            return np.concatenate([xy, inside[..., None].astype(np.float64)], axis=-1)

        body, feet, hands = pack(sk.body), pack(sk.feet), pack(sk.hands)
        if boxes is None:
            pts = np.concatenate([sk.body, sk.feet, sk.hands.reshape(self.frames, -1, 2)], axis=1) / n
            boxes = np.concatenate([pts.min(1), pts.max(1)], axis=1).clip(0, 1)  # (F, 4) x0, y0, x1, y1
        return PoseSequence(self.size, self.size, body, feet, hands, boxes)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Normalised (x0, y0, x1, y1) pixel-edge box of a (H, W) bool mask; NaNs when empty."""
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return np.full(4, np.nan)
    return np.array([cols[0] / w, rows[0] / h, (cols[-1] + 1) / w, (rows[-1] + 1) / h])


@dataclass(frozen=True)
class Pair:
    """A source / target / ground-truth-edit triple (see the module docstring)."""

    seed: int
    frames: int
    size: int
    fps: Fraction
    source: PuppetVideo
    target: PuppetVideo
    edit: PuppetVideo

    def video(self, role: Role) -> PuppetVideo:
        return {"source": self.source, "target": self.target, "edit": self.edit}[role]

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary of what was generated."""
        return {
            "seed": self.seed,
            "frames": self.frames,
            "size": self.size,
            "fps": str(self.fps),
            "source_motion": self.source.motion.kind,
            "target_motion": self.target.motion.kind,
            "camera": self.source.scene.camera_kind,
            "source_height_px": round(self.source.puppet.height, 3),
            "target_height_px": round(self.target.puppet.height, 3),
        }


def make_pair(
    seed: int,
    *,
    frames: int = 48,
    size: int = 256,
    fps: Fraction | int = 24,
    camera: CameraKind | None = None,
    source_motion: str | None = None,
    target_motion: str | None = None,
) -> Pair:
    """Build the pair of ``seed``. Unset options are drawn from the seed (two distinct motions,
    a random camera). Every random choice comes from generators spawned from ``seed``."""
    if frames < 1 or size < 16:
        raise ValueError("frames must be >= 1 and size >= 16")
    fps = Fraction(fps)
    if fps <= 0:
        raise ValueError("fps must be positive")
    streams = np.random.SeedSequence(seed).spawn(8)
    pick, pa, pd, m1, m2, bg_a, bg_d, cam = (np.random.default_rng(s) for s in streams)
    # Always make the same draws, so an option given on the command line changes only itself.
    drawn_kind, offset = KINDS[int(pick.integers(len(KINDS)))], int(pick.integers(1, len(KINDS)))
    drawn_camera = CAMERAS[int(pick.integers(len(CAMERAS)))]
    for asked in (source_motion, target_motion):
        if asked is not None and asked not in KINDS:
            raise ValueError(f"unknown motion {asked!r}; choose from {', '.join(KINDS)}")
    kind1 = source_motion or drawn_kind
    kind2 = target_motion or KINDS[(KINDS.index(kind1) + offset) % len(KINDS)]  # never kind1
    camera = camera or drawn_camera
    puppet_a = Puppet.sample(pa, size, scale=(0.55, 0.72), x_range=0.12)
    puppet_d = Puppet.sample(pd, size, scale=(0.42, 0.62), x_range=0.2)
    motion1 = Motion.sample(kind1, m1)
    # Drawn motions always differ; asking for the same kind twice gives the same trajectory
    # (so the ground-truth edit equals the source).
    motion2 = motion1 if kind2 == kind1 else Motion.sample(kind2, m2)
    scene_a = Scene(
        make_background(bg_a, WORLD * size, WORLD * size), camera_path(camera, frames, float(fps), size, cam), camera
    )
    scene_d = Scene(
        make_background(bg_d, WORLD * size, WORLD * size), camera_path("none", frames, float(fps), size, cam)
    )
    return Pair(
        seed=seed,
        frames=frames,
        size=size,
        fps=fps,
        source=PuppetVideo(puppet_a, motion1, scene_a, frames, fps, size),
        target=PuppetVideo(puppet_d, motion2, scene_d, frames, fps, size),
        edit=PuppetVideo(puppet_a, motion2, scene_a, frames, fps, size),
    )


class PuppetPairs:
    """Training data rendered on the fly (no files): pair ``index`` is :func:`make_pair` of a
    seed derived from (``seed``, ``index``), so any item can be regenerated on its own.

    - :meth:`clip` gives frames, masks and poses of one role over a frame range;
    - :meth:`image_pair` gives one source frame and one ground-truth edit frame (the target's
      motion on the source puppet) with their poses and masks: a supervised motion-edit example;
    - :meth:`clip_pair` gives the same for aligned clips.
    """

    def __init__(self, seed: int, length: int, *, frames: int = 48, size: int = 256, fps: Fraction | int = 24) -> None:
        self.seed, self.length, self.frames, self.size, self.fps = seed, length, frames, size, Fraction(fps)

    def __len__(self) -> int:
        return self.length

    def pair(self, index: int) -> Pair:
        if not 0 <= index < self.length:
            raise IndexError(index)
        derived = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
        return make_pair(derived, frames=self.frames, size=self.size, fps=self.fps)

    @staticmethod
    def clip(pair: Pair, role: Role, start: int, stop: int) -> dict[str, object]:
        """Frames (F, H, W, 3) uint8, masks (F, H, W) bool and a PoseSequence for [start, stop)."""
        video = pair.video(role)
        rendered = [video.render(f) for f in range(start, stop)]
        masks = np.stack([r.mask for r in rendered])
        boxes = np.stack([mask_box(m) for m in masks])
        poses = video.poses()[start:stop]
        poses = replace(poses, box=boxes)
        return {"frames": np.stack([r.rgb for r in rendered]), "masks": masks, "poses": poses}

    def image_pair(self, index: int) -> dict[str, object]:
        """Source frame i and edit frame j (i, j drawn from the index) with poses and masks."""
        pair = self.pair(index)
        rng = np.random.default_rng([self.seed, index, 1])
        i, j = (int(v) for v in rng.integers(0, self.frames, size=2))
        return {
            "source": self.clip(pair, "source", i, i + 1),
            "edit": self.clip(pair, "edit", j, j + 1),
            "frames": (i, j),
        }

    def clip_pair(self, index: int, length: int) -> dict[str, object]:
        """Aligned source and edit clips of ``length`` frames starting at a frame drawn from the index."""
        if not 1 <= length <= self.frames:
            raise ValueError(f"clip length {length} must be within 1..{self.frames}")
        pair = self.pair(index)
        start = int(np.random.default_rng([self.seed, index, 2]).integers(0, self.frames - length + 1))
        return {
            "source": self.clip(pair, "source", start, start + length),
            "edit": self.clip(pair, "edit", start, start + length),
            "start": start,
        }

    def __iter__(self) -> Iterator[dict[str, object]]:
        for index in range(self.length):
            yield self.image_pair(index)
