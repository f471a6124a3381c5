"""A source given as a folder of frames (``frame_0 … frame_N``) or as one still image is read by the
stages exactly as a video is: the same poses, masks and camera, and ``mfollow edit DIR TGT`` runs."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mfollow.io.media import IMAGE_FPS, media_frames, media_info
from mfollow.io.video import probe, read_frames
from mfollow.preprocess.masks.files import read_masks
from mfollow.preprocess.pose import PUPPET_ALIGN
from mfollow.preprocess.pose.align import AlignSettings
from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.preprocess.stages import align_stage, mask_stage, pose_stage
from mfollow.runtime.errors import MediaError
from mfollow.synth import make_pair
from mfollow.synth.files import write_pair


def as_folder(frames: np.ndarray, folder: Path) -> Path:
    """Lossless PNGs named as the official release names them: frame_0 … frame_N (not padded)."""
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame_{i}.png")
    return folder


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pair")
    write_pair(make_pair(3, frames=12, size=64, camera="pan"), out)
    as_folder(read_frames(out / "source.mp4"), out / "source_frames")
    return out


def test_a_folder_reads_in_frame_order_at_the_image_rate(pair: Path) -> None:
    video = read_frames(pair / "source.mp4")
    info = media_info(pair / "source_frames")
    assert (info.frame_count, info.display_width, info.display_height) == (12, 64, 64)
    assert info.timestamps == tuple(range(12)) and info.time_base == 1 / IMAGE_FPS and info.average_fps == IMAGE_FPS
    got = np.stack(list(media_frames(pair / "source_frames", info)))
    np.testing.assert_array_equal(got, video)  # frame_10 after frame_9, not after frame_1
    still = media_info(pair / "source_frames" / "frame_4.png")
    assert still.frame_count == 1
    np.testing.assert_array_equal(next(media_frames(pair / "source_frames" / "frame_4.png")), video[4])
    assert media_info(pair / "source.mp4") == probe(pair / "source.mp4")  # a video: the probe itself


def test_exif_orientation_and_mixed_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)  # stored 50 wide, 30 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": a phone held upright
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", exif=exif, quality=100)
    info = media_info(tmp_path / "photo.jpg")
    assert (info.display_width, info.display_height) == (30, 50)
    frame = next(media_frames(tmp_path / "photo.jpg"))
    assert frame.shape == (50, 30, 3)
    stored = np.asarray(Image.open(tmp_path / "photo.jpg"))
    np.testing.assert_array_equal(frame, np.rot90(stored, k=-1))  # turned clockwise, as a viewer shows it
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(pixels).save(folder / "frame_0.png")
    Image.fromarray(pixels[:, :40]).save(folder / "frame_1.png")
    with pytest.raises(MediaError, match=r"frame_1.png: 40x30, but frame_0.png is 50x30"):
        media_info(folder)


def stages(root: Path, pair: Path, source: Path) -> tuple[PoseSequence, dict, np.ndarray]:
    pose_stage(root, source, "source", pair / "source_poses.json")
    pose_stage(root, pair / "target.mp4", "target", pair / "target_poses.json")
    outputs = align_stage(root, AlignSettings(**PUPPET_ALIGN))["outputs"]  # the camera followed: read from the pixels
    masks = mask_stage(root, source_masks=pair / "source_masks", edit_backend="segdit", preview=True)
    assert probe(Path(masks["outputs"]["preview.mp4"])).frame_count == 12  # M_r and M_e over the source
    m_e = read_masks(Path(masks["outputs"]["edit_masks/frame_00000.png"]).parent)
    camera = json.loads(Path(outputs["camera.json"]).read_text())
    return PoseSequence.load(Path(outputs["edit_poses.json"])), camera, m_e


def test_the_stages_read_a_folder_as_the_video(tmp_path: Path, pair: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The camera track (align), SegDiT's M_e and the mask preview all read the source's pixels."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # the bundled SegDiT
    edit_v, camera_v, m_e_v = stages(tmp_path / "video", pair, pair / "source.mp4")
    edit_f, camera_f, m_e_f = stages(tmp_path / "folder", pair, pair / "source_frames")
    assert camera_f == camera_v and np.abs(camera_v["shift"]).max() > 1  # the pan was measured, the same
    np.testing.assert_array_equal(edit_f.body, edit_v.body)
    np.testing.assert_array_equal(m_e_f, m_e_v)
    assert m_e_f.shape == (12, 64, 64) and m_e_f.any()


def test_a_still_image_stands_for_every_frame_of_the_edit(tmp_path: Path, pair: Path) -> None:
    still = pair / "source_frames" / "frame_0.png"
    root = tmp_path / "p"
    one = PoseSequence.load(pair / "source_poses.json")[0:1]
    one.save(tmp_path / "one.json")
    pose_stage(root, still, "source", tmp_path / "one.json")
    pose_stage(root, pair / "target.mp4", "target", pair / "target_poses.json")
    align_stage(root)
    Path(tmp_path / "m").mkdir()
    (tmp_path / "m" / "frame_00000.png").write_bytes((pair / "source_masks" / "frame_00000.png").read_bytes())
    report = mask_stage(root, source_masks=tmp_path / "m", edit_backend="segdit")
    m_e = read_masks(Path(report["outputs"]["edit_masks/frame_00000.png"]).parent)
    assert m_e.shape == (12, 64, 64)  # one M_e per target frame, from the one source image


@pytest.mark.slow
def test_cli_edit_of_a_folder_of_photographs(tmp_path: Path) -> None:
    """`mfollow edit frames/ tgt.mp4 -o out.mp4` with frames named frame_0 … frame_5 (mediapipe
    poses and segments them), then the project's report."""
    pytest.importorskip("mediapipe")
    data = pytest.importorskip("skimage.data")
    from clirun import run

    from mfollow.io.video import write_video

    photo = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256)))
    as_folder(np.stack([np.roll(photo, 2 * i, axis=1) for i in range(6)]), tmp_path / "frames")
    cameraman = np.asarray(Image.fromarray(data.camera()).convert("RGB").resize((256, 256)))
    write_video(tmp_path / "tgt.mp4", [np.roll(cameraman, -2 * i, axis=1) for i in range(6)], range(6), Fraction(1, 12))
    env = {"XDG_DATA_HOME": str(tmp_path / "no-weights")}
    r = run("edit", "frames", "tgt.mp4", "-o", "out.mp4", "--steps", "1", "--json", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["pose_backend"] == {"source": "mediapipe", "target": "mediapipe"}
    out = probe(tmp_path / "out.mp4")
    assert out.frame_count == 6 and (out.width, out.height) == (256, 256)
    assert out.timestamps == probe(tmp_path / "tgt.mp4").timestamps  # a folder is timed by the target
    r = run("report", "-p", "out.mfollow", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.mfollow" / "report" / "report.html").is_file()


@pytest.mark.slow
def test_a_folder_of_two_sizes_is_refused_before_anything_runs(tmp_path: Path, pair: Path) -> None:
    from clirun import one_line_error, run

    frames = as_folder(read_frames(pair / "source.mp4")[:3], tmp_path / "frames")
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(frames / "frame_2.png")
    r = run("edit", str(frames), str(pair / "target.mp4"), "-o", str(tmp_path / "out.mp4"))
    one_line_error(r, 4, "frame_2.png: 48x32, but frame_0.png is 64x64")
    assert not (tmp_path / "out.mfollow").exists()  # refused before the project was made
