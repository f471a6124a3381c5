"""`mfollow report`: the page and its media from a project's cache, and the page in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from clirun import mfollow, one_line_error
from PIL import Image

from mfollow.io.video import probe
from mfollow.report.page import svg_plot

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

#: Appended to a copy of the page in the test: after load, every image's and video's state as JSON.
CHECK = """<script>
window.addEventListener('load', () => {
  const out = {images: [], videos: []};
  for (const img of document.querySelectorAll('img'))
    out.images.push({src: img.getAttribute('src'), ok: img.complete && img.naturalWidth > 0});
  const videos = [...document.querySelectorAll('video')];
  let pending = videos.length;
  const done = () => { const pre = document.createElement('pre'); pre.id = 'check';
                       pre.textContent = JSON.stringify(out); document.body.appendChild(pre); };
  if (!pending) done();
  for (const v of videos) {
    const finish = ok => { out.videos.push({src: v.getAttribute('src'), ok, ready: v.readyState, width: v.videoWidth});
                           if (--pending === 0) done(); };
    if (v.readyState >= 2) finish(true);
    else { v.addEventListener('loadeddata', () => finish(true), {once: true});
           v.addEventListener('error', () => finish(false), {once: true}); }
  }
});
</script>"""


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real demo project (bundled model, a short run): stages, a result and per-frame scores."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    r = mfollow("demo", str(out), "--frames", "8", "--steps", "2", "-q")
    assert r.returncode == 0, r.stderr
    preview = out / "project" / "preview" / "latest"  # as --preview-every leaves it
    preview.mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(preview / "frame_00003.png")
    (preview / "preview.json").write_text(json.dumps({"step": 1, "steps": 2}))
    return out / "project"


@pytest.mark.slow
def test_page_and_media_from_the_cache(demo_project: Path, tmp_path: Path) -> None:
    page = tmp_path / "copy" / "page.html"
    r = mfollow("report", "-p", str(demo_project), "-o", str(page), "--json", "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    text = page.read_text()
    for title in ("Source and target", "Poses", "Masks", "Result", "Per-frame metrics", "Latest sampling preview",
                  "Stages"):  # fmt: skip
        assert f"<h2>{title}" in text, title
    media = sorted(Path(p).name for p in doc["media"])
    assert media == ["align.mp4", "frame_00003.png", "masks_over_source.mp4", "pose-source.mp4", "pose-target.mp4",
                     "poses_over_source.mp4", "source.mp4", "source_and_result.mp4", "target.mp4"]  # fmt: skip
    assert "Target poses" in text and "Warnings" not in text  # the target's motion as estimated; nothing doomed
    assert 'src="page_media/source.mp4"' in text and "http" not in text.replace('xmlns="http://www.w3.org', "")
    info = probe(page.parent / "page_media" / "source_and_result.mp4")
    assert info.codec == "h264" and info.frame_count == 8 and info.width == 2 * probe(page.parent / "page_media" /
                                                                                        "source.mp4").width  # fmt: skip
    assert text.count("<svg") == 4 and "fresh" in text and "&quot;edit_backend&quot;: &quot;segdit&quot;" in text


@pytest.mark.slow
def test_report_errors(tmp_path: Path) -> None:
    one_line_error(mfollow("report", "-p", str(tmp_path / "none")), 5, "no such project")
    (tmp_path / "p").mkdir()
    one_line_error(mfollow("report", "-p", str(tmp_path / "p"), "-o", str(tmp_path / "r.txt")), 2, ".html")
    r = mfollow("report", "-p", str(tmp_path / "p"), "-q")  # an empty project: the stage table alone
    assert r.returncode == 0, r.stderr
    assert "<h2>Stages" in (tmp_path / "p" / "report" / "report.html").read_text()


def test_svg_plot_draws_every_point() -> None:
    svg = svg_plot([1.0, 3.0, 2.0], "psnr", width=100, height=60)
    points = svg.split('points="')[1].split('"')[0].split()
    assert len(points) == 3 and points[1].endswith(",22.0") and points[0].endswith(",36.0")  # max at the top


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium)")
def test_the_page_loads_in_a_real_browser(demo_project: Path, tmp_path: Path) -> None:
    r = mfollow("report", "-p", str(demo_project), "-q")
    assert r.returncode == 0, r.stderr
    page = demo_project / "report" / "report.html"
    probe_page = page.with_name("check.html")  # the same page and media, plus the checking script
    probe_page.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    dom = subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile-a'}", "--virtual-time-budget=15000",
         "--dump-dom", probe_page.as_uri()], capture_output=True, text=True, timeout=300,
    ).stdout  # fmt: skip
    state = json.loads(dom.split('<pre id="check">', 1)[1].split("</pre>", 1)[0])
    assert len(state["videos"]) == 8 and len(state["images"]) == 1  # the target poses among them
    for element in state["videos"] + state["images"]:
        assert element["ok"], element
    assert all(v["ready"] >= 2 and v["width"] > 0 for v in state["videos"])
    shot = tmp_path / "page.png"
    subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp_path / 'profile-b'}", "--virtual-time-budget=5000",
         "--window-size=1280,1600", f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=300,
    )  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # not a blank page


def test_masks_stay_visible_where_they_overlap(tmp_path: Path) -> None:
    """M_r is filled red, M_e outlined in green: inside both the red fill shows, and M_e's outline
    is drawn across M_r."""
    from mfollow.preprocess.masks.files import mask_name, write_mask
    from mfollow.report.media import M_E_TINT, masks_over

    m_r = np.zeros((32, 32), bool)
    m_r[4:28, 4:20] = True
    m_e = np.zeros((32, 32), bool)
    m_e[8:24, 12:28] = True
    for folder, m in (("r", m_r), ("e", m_e)):
        (tmp_path / folder).mkdir()
        write_mask(tmp_path / folder / mask_name(0), m)
    frame = np.full((32, 32, 3), 100, np.uint8)
    out = next(masks_over([frame], tmp_path / "r", tmp_path / "e", (32, 32))).astype(int)
    assert out[16, 16, 0] > out[16, 16, 1]  # inside both, away from M_e's edge: M_r's red
    assert list(out[12, 12]) == list(M_E_TINT)  # M_e's outline, drawn over M_r
    assert list(out[2, 2]) == [100, 100, 100]  # neither
