"""mfollow.io.video: probe, read, write, timestamps, audio, sizes, rotation, bad input."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from media import make_audio_only, make_empty_video, make_video, smooth_frame

from mfollow.io import video
from mfollow.runtime.errors import MediaError

VFR = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 18, 21, 24, 27, 30, 31, 32, 40]  # 30 fps, then 10 fps


def _times(info: video.VideoInfo) -> list[Fraction]:
    return [t * info.time_base for t in info.timestamps]


def _roundtrip(src: Path, dst: Path, **options: object) -> tuple[video.VideoInfo, video.VideoInfo]:
    info = video.probe(src)
    video.write_video(dst, video.iter_frames(src), info.timestamps, info.time_base, **options)
    return info, video.probe(dst)


# ------------------------------------------------------------------------------ timestamps
def test_constant_rate_roundtrip_keeps_timestamps_and_pixels(tmp_path: Path) -> None:
    src = make_video(tmp_path / "cfr.mp4", n=15, time_base=Fraction(1, 25))
    a, b = _roundtrip(src, tmp_path / "out.mp4")
    assert a.frame_count == b.frame_count == 15
    assert b.timestamps == a.timestamps == tuple(range(15))
    assert b.time_base == a.time_base == Fraction(1, 25)
    assert a.constant_rate and b.constant_rate
    assert b.average_fps == 25 and b.duration == pytest.approx(0.6)
    diff = np.abs(video.read_frames(src).astype(int) - video.read_frames(tmp_path / "out.mp4").astype(int))
    assert diff.mean() < 3.0  # crf 18 re-encode of smooth content


def test_variable_rate_roundtrip_keeps_every_timestamp(tmp_path: Path) -> None:
    src = make_video(tmp_path / "vfr.mp4", timestamps=VFR, time_base=Fraction(1, 30))
    a, b = _roundtrip(src, tmp_path / "out.mp4")
    assert a.timestamps == tuple(VFR)
    assert b.timestamps == tuple(VFR) and b.time_base == Fraction(1, 30)
    assert not b.constant_rate
    assert b.duration == pytest.approx(48 / 30)  # the last frame lasts as long as the step before it


def test_ntsc_time_base_preserves_times_exactly(tmp_path: Path) -> None:
    frames = [smooth_frame(i, 64, 48) for i in range(6)]
    tb = Fraction(1001, 30000)
    video.write_video(tmp_path / "ntsc.mp4", frames, [0, 1, 2, 4, 5, 9], tb)
    info = video.probe(tmp_path / "ntsc.mp4")
    assert _times(info) == [Fraction(k * 1001, 30000) for k in (0, 1, 2, 4, 5, 9)]


def test_mkv_millisecond_time_base(tmp_path: Path) -> None:
    ts = [0, 33, 67, 100, 133, 167, 200]
    src = make_video(tmp_path / "ms.mkv", timestamps=ts, time_base=Fraction(1, 1000))
    a, b = _roundtrip(src, tmp_path / "out.mp4")
    assert a.timestamps == tuple(ts) and _times(b) == _times(a)


def test_probe_reports_average_rate_and_frame_count_without_decoding_all(tmp_path: Path) -> None:
    src = make_video(tmp_path / "v.mp4", n=30, time_base=Fraction(1, 30), gop=6)
    info = video.probe(src)
    assert info.frame_count == 30 == len(video.read_frames(src))
    assert info.average_fps == 30
    assert info.to_json()["average_fps"] == "30"


# ----------------------------------------------------------------------------------- audio
@pytest.mark.parametrize(
    ("container", "codec", "rate", "expect"),
    [("mp4", "aac", 44100, "aac"), ("mkv", "libopus", 48000, "opus"), ("mkv", "pcm_s16le", 44100, "aac")],
)
def test_audio_is_copied_or_transcoded(tmp_path: Path, container: str, codec: str, rate: int, expect: str) -> None:
    src = make_video(tmp_path / f"a.{container}", n=25, audio=codec, sample_rate=rate)
    a, b = _roundtrip(src, tmp_path / "out.mp4", audio_from=src)
    assert len(b.audio) == 1 and b.audio[0].codec == expect
    assert b.audio[0].sample_rate == rate
    one_frame = 1 / float(a.average_fps)
    source_audio = a.audio[0].duration or a.duration  # MKV stores no per-stream duration
    assert b.audio[0].duration is not None
    assert abs(b.audio[0].duration - source_audio) <= one_frame


def test_audio_modes_none_and_forced_aac(tmp_path: Path) -> None:
    src = make_video(tmp_path / "a.mkv", n=10, audio="libopus", sample_rate=48000)
    _, b = _roundtrip(src, tmp_path / "none.mp4", audio_from=src, audio="none")
    assert b.audio == ()
    _, c = _roundtrip(src, tmp_path / "aac.mp4", audio_from=src, audio="aac")
    assert c.audio[0].codec == "aac"


def test_audio_window_keeps_the_matching_part(tmp_path: Path) -> None:
    src = make_video(tmp_path / "a.mp4", n=25, audio="aac")
    info = video.probe(src)
    frames = video.read_frames(src, 5, 15)
    out = tmp_path / "cut.mp4"
    ts = [t - info.timestamps[5] for t in info.timestamps[5:15]]
    video.write_video(out, frames, ts, info.time_base, audio_from=src, audio_window=(0.2, 0.6))
    cut = video.probe(out)
    assert cut.audio[0].duration == pytest.approx(0.4, abs=0.04)  # one 25-fps frame


def _decoded_audio(path: Path) -> np.ndarray:
    """(channels, samples) as a player hears it (edit lists applied by FFmpeg's demuxer)."""
    import av

    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray() for f in c.decode(c.streams.audio[0])], axis=1)


@pytest.mark.parametrize(("first", "stop"), [(0, 25), (5, 15)])
def test_copied_audio_decodes_to_the_source_samples(tmp_path: Path, first: int, stop: int) -> None:
    """AAC's priming packet (negative pts) and the pre-roll packet before a window are kept, so
    the output decodes to exactly the source's samples over the edited range (no click)."""
    src = make_video(tmp_path / "a.mp4", n=25, audio="aac")
    info = video.probe(src)
    ts = [t - info.timestamps[first] for t in info.timestamps[first:stop]]
    lo, hi = first / 25, stop / 25  # the window in seconds (25 fps)
    out = tmp_path / "out.mp4"
    video.write_video(out, video.read_frames(src, first, stop), ts, info.time_base, audio_from=src,
                      audio_window=(lo, hi))  # fmt: skip
    source, output = _decoded_audio(src), _decoded_audio(out)
    a, n = round(lo * 44100), round((hi - lo) * 44100)
    assert output.shape[1] >= n
    np.testing.assert_array_equal(output[:, :n], source[:, a : a + n])


def test_source_without_audio_writes_no_audio(tmp_path: Path) -> None:
    src = make_video(tmp_path / "silent.mp4")
    _, b = _roundtrip(src, tmp_path / "out.mp4", audio_from=src)
    assert b.audio == ()


# ------------------------------------------------------------------------- sizes, rotation
def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    frames = [smooth_frame(i, 33, 17) for i in range(4)]
    video.write_video(tmp_path / "odd.mp4", frames, range(4), Fraction(1, 25), crf=0)
    info = video.probe(tmp_path / "odd.mp4")
    assert (info.width, info.height) == (34, 18)
    back = video.read_frames(tmp_path / "odd.mp4")
    # the padding repeats the last column/row, so the original area is intact
    assert np.abs(back[:, :17, :33].astype(int) - np.stack(frames).astype(int)).mean() < 4.0
    # the added column and row repeat their neighbours (up to 4:2:0 chroma rounding)
    assert np.abs(back[:, :, 33].astype(int) - back[:, :, 32].astype(int)).mean() < 4.0
    assert np.abs(back[:, 17].astype(int) - back[:, 16].astype(int)).mean() < 4.0


def test_even_size() -> None:
    assert video.even_size(33, 17) == (34, 18)
    assert video.even_size(64, 48) == (64, 48)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_gives_upright_frames(tmp_path: Path, rotation: int) -> None:
    frames = [smooth_frame(i, 64, 48) for i in range(3)]
    src = make_video(tmp_path / "rot.mp4", n=3, rotation=rotation, frames=frames)
    info = video.probe(src)
    assert info.rotation == rotation
    expect_size = (48, 64) if rotation in (90, 270) else (64, 48)
    assert (info.display_width, info.display_height) == expect_size
    got = video.read_frames(src)
    expected = np.stack([np.rot90(f, rotation // 90) for f in frames])  # counter-clockwise turns
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).mean() < 4.0


def test_index_range_matches_full_read_across_keyframes(tmp_path: Path) -> None:
    src = make_video(tmp_path / "gop.mp4", n=30, gop=5)
    full = video.read_frames(src)
    for start, stop in [(0, 3), (17, 23), (25, 30), (5, 6)]:
        np.testing.assert_array_equal(video.read_frames(src, start, stop), full[start:stop])
    with pytest.raises(MediaError, match="outside"):
        video.read_frames(src, 10, 31)


# ---------------------------------------------------------------------------- working size
def test_working_geometry_policies() -> None:
    crop = video.working_geometry(1920, 1080, video.FramePolicy())
    assert (crop.width, crop.height) == (896, 512)
    assert crop.scaled_h == 512 and crop.scaled_w == 910 and crop.crop_x == 7 and crop.crop_y == 0
    pad = video.working_geometry(1920, 1080, video.FramePolicy(fit="pad", short_side=256))
    assert (pad.width, pad.height) == (448, 256)
    assert pad.scaled_w == 448 and pad.scaled_h == 252 and pad.crop_y == -2
    stretch = video.working_geometry(1000, 700, video.FramePolicy(fit="stretch", short_side=128))
    assert (stretch.width, stretch.height, stretch.scaled_w, stretch.scaled_h) == (192, 128, 192, 128)
    explicit = video.working_geometry(640, 480, video.FramePolicy(size=(512, 512)))
    assert (explicit.width, explicit.height) == (512, 512) and explicit.scaled_w == 683
    for w, h in [(1920, 1080), (1080, 1920), (333, 777), (64, 64)]:
        g = video.working_geometry(w, h, video.FramePolicy(short_side=256))
        assert g.width % 64 == 0 and g.height % 64 == 0 and min(g.width, g.height) == 256


def test_frame_policy_validates() -> None:
    with pytest.raises(ValueError):
        video.FramePolicy(size=(100, 64))
    with pytest.raises(ValueError):
        video.FramePolicy(fit="zoom")  # type: ignore[arg-type]


@pytest.mark.parametrize("fit", ["crop", "pad", "stretch"])
def test_read_with_policy(tmp_path: Path, fit: str) -> None:
    src = make_video(tmp_path / "wide.mp4", n=3, width=160, height=90)
    out = video.read_frames(src, policy=video.FramePolicy(short_side=64, fit=fit))  # type: ignore[arg-type]
    assert out.shape == (3, 64, 128, 3)
    if fit == "pad":  # 160x90 fits 128x72 inside 128x64? no: 113.8x64, padded left/right with black
        assert out[:, :, :5].max() == 0 and out[:, :, -5:].max() == 0
    else:
        assert out[:, :, :5].max() > 0


# ------------------------------------------------------------------------------- bad input
def test_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello, not a video\n")
    (tmp_path / "zero.mp4").write_bytes(b"")
    cases = {
        tmp_path / "missing.mp4": "no such file",
        tmp_path: "is a directory",
        tmp_path / "notes.txt": "not a",
        make_audio_only(tmp_path / "audio.m4a"): "no video stream",
        make_empty_video(tmp_path / "empty.mp4"): "no streams",
        tmp_path / "zero.mp4": "empty",
    }
    for path, message in cases.items():
        with pytest.raises(MediaError, match=message) as err:
            video.probe(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_unwritable_output_location(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(MediaError, match="cannot"):
        video.write_video(tmp_path / "file" / "out.mp4", [smooth_frame(0, 64, 48)], [0], Fraction(1, 25))


def test_writer_refuses_wrong_frames_and_timestamps(tmp_path: Path) -> None:
    with (
        pytest.raises(MediaError, match="timestamps must increase"),
        video.VideoWriter(tmp_path / "o.mp4", 64, 48, Fraction(1, 25)) as w,
    ):
        w.write(smooth_frame(0, 64, 48), 1)
        w.write(smooth_frame(1, 64, 48), 1)
    with pytest.raises(MediaError, match="shape"), video.VideoWriter(tmp_path / "o.mp4", 64, 48, Fraction(1, 25)) as w:
        w.write(np.zeros((10, 10, 3), np.uint8), 0)
    frames = [smooth_frame(i, 64, 48) for i in range(3)]
    with pytest.raises(MediaError, match="more frames than the 2 timestamps"):
        video.write_video(tmp_path / "o.mp4", frames, [0, 1], Fraction(1, 25))
    with pytest.raises(MediaError, match="3 frames but 4 timestamps"):
        video.write_video(tmp_path / "o.mp4", frames, [0, 1, 2, 3], Fraction(1, 25))
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_the_previous_file(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    video.write_video(out, [smooth_frame(i, 64, 48) for i in range(3)], range(3), Fraction(1, 25))
    before = out.read_bytes()

    def frames_then_crash():  # type: ignore[no-untyped-def]
        yield smooth_frame(0, 64, 48)
        yield smooth_frame(1, 64, 48)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        video.write_video(out, frames_then_crash(), range(5), Fraction(1, 25))
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no partial file left


def test_encoding_is_deterministic(tmp_path: Path) -> None:
    # With x264's mbtree on, these frames gave several different files in 20 encodes.
    frames = [smooth_frame(i, 64, 64) for i in range(12)]
    digests = set()
    for k in range(12):
        video.write_video(tmp_path / f"{k}.mp4", frames, range(12), Fraction(1, 24))
        digests.add((tmp_path / f"{k}.mp4").read_bytes())
    assert len(digests) == 1
