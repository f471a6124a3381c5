"""Learned metrics: LPIPS, the FID Inception, the Fréchet distance, FVD clips, loading published
files (written here from random networks in the publishers' layouts), and ``eval --lpips/--fid/--fvd``."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mfollow.metrics.learned.backbones import AlexNetFeatures, VGG16Features
from mfollow.metrics.learned.frechet import feature_distance, frechet_distance, gaussian
from mfollow.metrics.learned.i3d import load_i3d
from mfollow.metrics.learned.inception import FIDInception
from mfollow.metrics.learned.lpips import LPIPS
from mfollow.metrics.learned.scorer import LearnedScorer
from mfollow.metrics.learned.settings import LearnedSettings
from mfollow.runtime.errors import UsageError, WeightsError


class FakeI3D(nn.Module):
    """The I3D TorchScript interface: (B, 3, T, H, W) in [0, 255] -> (B, 3 T) features (the mean
    colour of each frame, in [-1, 1])."""

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1
        return x.mean(dim=(3, 4)).flatten(1)  # (B, 3, T, H, W) -> (B, 3 T)


def _lpips(net: str, seed: int = 0) -> LPIPS:
    torch.manual_seed(seed)
    model = LPIPS(net)
    for lin in model.lins:  # the published linear weights are non-negative
        lin.weight.data.abs_()
    return model


def write_learned_weights(root: Path, nets: tuple[str, ...] = ("alex",)) -> dict[str, nn.Module]:
    """Random networks saved as the published files (torchvision / lpips / pytorch-fid names)."""
    from mfollow.metrics.learned import i3d, inception
    from mfollow.metrics.learned import lpips as L

    models: dict[str, nn.Module] = {}
    for net in nets:
        model = _lpips(net)
        folder = root / f"lpips-{net}"
        folder.mkdir(parents=True)
        trunk_file, lin_file = L.files(net)
        trunk = {k: v for k, v in model.net.state_dict().items()}
        trunk["classifier.1.weight"] = torch.zeros(2, 2)  # torchvision files carry the classifier
        torch.save(trunk, folder / trunk_file)
        torch.save({f"lin{k}.model.1.weight": lin.weight for k, lin in enumerate(model.lins)}, folder / lin_file)
        models[f"lpips-{net}"] = model
    torch.manual_seed(1)
    fid = FIDInception()
    for m in fid.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    (root / "fid-inception").mkdir()
    state = {k: v for k, v in fid.state_dict().items() if not k.endswith("num_batches_tracked")}
    state |= {"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}
    torch.save(state, root / "fid-inception" / inception.FILE)
    models["fid-inception"] = fid
    (root / "fvd-i3d" / "auxiliary").mkdir(parents=True)
    with warnings.catch_warnings():  # TorchScript is deprecated; the published I3D file is one
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(FakeI3D()), str(root / "fvd-i3d" / i3d.FILE))
    return models


def _images(seed: int, n: int = 2, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


# ------------------------------------------------------------------------------------- networks
def test_trunks_have_torchvisions_parameter_names() -> None:
    alex = {k.rsplit(".", 1)[0] for k in AlexNetFeatures().state_dict()}
    assert alex == {f"features.{i}" for i in (0, 3, 6, 8, 10)}
    vgg = {k.rsplit(".", 1)[0] for k in VGG16Features().state_dict()}
    assert vgg == {f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)}
    shapes = [f.shape[1] for f in AlexNetFeatures()(torch.zeros(1, 3, 64, 64))]
    assert shapes == [64, 192, 384, 256, 256]
    assert [f.shape[1:] for f in VGG16Features()(torch.zeros(1, 3, 32, 32))] == [
        (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2),
    ]  # fmt: skip


def test_fid_inception_is_torchvisions_trunk() -> None:
    model = FIDInception()
    # torchvision's Inception-v3 has 27,161,264 parameters; without its classifier (2,049,000) and
    # auxiliary head (3,326,696) that leaves the trunk's 21,785,568
    assert sum(p.numel() for p in model.parameters()) == 21_785_568
    assert model(torch.rand(2, 3, 40, 56)).shape == (2, 2048)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_invariants(net: str) -> None:
    model = _lpips(net)
    x, y = _images(0), _images(1)
    assert torch.equal(model(x, x), torch.zeros(2))
    d = model(x, y)
    assert d.shape == (2,) and (d > 0).all()
    assert torch.allclose(model(y, x), d, rtol=1e-6, atol=0)
    assert torch.allclose(model(x[:1], y[:1]), d[:1], rtol=1e-5, atol=1e-7)  # per image
    # positive rescaling of features cancels in unit(): doubling every linear weight doubles d
    for lin in model.lins:
        lin.weight.data.mul_(2)
    assert torch.allclose(model(x, y), 2 * d, rtol=1e-5)


def test_lpips_closed_form_on_a_one_layer_identity_trunk() -> None:
    """With the trunk replaced by the identity on one layer, d = mean_hw sum_c w_c (x^_c - y^_c)^2."""
    model = _lpips("alex")
    model.net = _Identity()  # type: ignore[assignment]
    model.lins = nn.ModuleList([nn.Conv2d(3, 1, 1, bias=False)])
    model.lins[0].weight.data = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    model.shift.zero_()
    model.scale.fill_(1.0)
    x = torch.zeros(1, 3, 1, 2)
    y = torch.zeros(1, 3, 1, 2)
    x[0, :, 0, 0], y[0, :, 0, 0] = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.0, 0.0, 2.0])
    x[0, :, 0, 1], y[0, :, 0, 1] = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 0.0, 0.0])
    # position 0: unit vectors (0.6, 0.8, 0) and (0, 0, 1): weighted 0.36 + 2 * 0.64 + 3 * 1; position 1: 0
    assert model(x, y).item() == pytest.approx((0.36 + 1.28 + 3.0) / 2, rel=1e-6)


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]


def test_published_files_load_and_reproduce(tmp_path: Path) -> None:
    models = write_learned_weights(tmp_path, ("alex", "vgg"))
    x, y = _images(2), _images(3)
    for net in ("alex", "vgg"):
        loaded = LPIPS.from_folder(net, tmp_path / f"lpips-{net}")
        assert torch.equal(loaded(x, y), models[f"lpips-{net}"](x, y))
    frames = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(4))
    fid = FIDInception.from_folder(tmp_path / "fid-inception")
    assert torch.equal(fid(frames), models["fid-inception"].eval()(frames))
    detector = load_i3d(tmp_path / "fvd-i3d")
    assert detector(torch.full((1, 3, 2, 4, 4), 255.0), rescale=True, resize=True, return_features=True).tolist() == [
        [1.0] * 6
    ]
    # a file for another network is refused, naming what does not fit
    (tmp_path / "lpips-alex" / "alexnet-owt-7be5be79.pth").write_bytes(
        (tmp_path / "lpips-vgg" / "vgg16-397923af.pth").read_bytes()
    )
    with pytest.raises(WeightsError, match=r"alexnet-owt-7be5be79\.pth: does not fit the network: .*missing"):
        LPIPS.from_folder("alex", tmp_path / "lpips-alex")
    (tmp_path / "fid-inception" / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="cannot read"):
        FIDInception.from_folder(tmp_path / "fid-inception")
    (tmp_path / "fvd-i3d" / "auxiliary" / "i3d_torchscript.pt").write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="not a TorchScript I3D"):
        load_i3d(tmp_path / "fvd-i3d")


# ------------------------------------------------------------------------------------ Fréchet
def test_frechet_distance_closed_forms() -> None:
    # 1-D: (m1 - m2)^2 + s1 + s2 - 2 sqrt(s1 s2)
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == pytest.approx(
        4 + 4 + 9 - 2 * 6
    )
    # diagonal covariances: the sum over dimensions
    s1, s2 = np.diag([1.0, 4.0, 0.25]), np.diag([4.0, 1.0, 0.25])
    expected = 1 + (1 + 4 - 4) + (4 + 1 - 4) + 0
    assert frechet_distance(np.zeros(3), s1, np.array([1.0, 0, 0]), s2) == pytest.approx(expected)
    # a set against itself: 0; against itself shifted by c: ||c||^2
    f = np.random.default_rng(0).normal(size=(50, 4))
    assert feature_distance(f, f) == pytest.approx(0, abs=1e-8)
    assert feature_distance(f, np.add(f, [1, 2, 0, 0])) == pytest.approx(5, rel=1e-6)
    mu, cov = gaussian(f)
    assert np.allclose(cov, np.cov(f.T)) and np.allclose(mu, f.mean(0))
    with pytest.raises(UsageError, match="at least 2"):
        gaussian(f[:1])


# ------------------------------------------------------------------------------------- scorer
class _MeanColour(nn.Module):
    """A stand-in FID network: each frame's mean colour."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def _video(seed: int, n: int, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_scorer_streams_frames_and_clips() -> None:
    s = LearnedSettings(lpips="alex", fid=True, fvd=True, fvd_clip=4, fvd_stride=3, batch=2)
    assert [s.clips(n) for n in (3, 4, 6, 7, 10)] == [0, 1, 1, 2, 3]
    models = {"lpips": _lpips("alex"), "fid": _MeanColour(), "fvd": FakeI3D()}
    a, b = _video(0, 11), _video(1, 11)
    scorer = LearnedScorer(s, models)
    rows = [scorer.add(x, y) for x, y in zip(a, b, strict=True)]
    out = scorer.finish()
    assert set(out) == {"fid", "fvd"}
    for row, x, y in zip(rows, a, b, strict=True):
        t = torch.from_numpy(np.stack([x, y])).permute(0, 3, 1, 2).float() / 255 * 2 - 1
        assert row["lpips"] == pytest.approx(float(models["lpips"](t[:1], t[1:])[0]), rel=1e-6)
    colour = lambda v: np.stack([f.reshape(-1, 3).mean(0) / 255 for f in v])  # noqa: E731
    assert out["fid"] == pytest.approx(feature_distance(colour(a), colour(b)), rel=1e-6)

    def clips(v: list[np.ndarray]) -> np.ndarray:  # clips at frames 0-3, 3-6, 6-9 (10 is left over)
        return np.stack(
            [np.concatenate([f.reshape(-1, 3).mean(0) / 127.5 - 1 for f in v[i : i + 4]]) for i in (0, 3, 6)]
        )

    assert out["fvd"] == pytest.approx(feature_distance(clips(a), clips(b)), rel=1e-6)
    same = LearnedScorer(s, models)
    assert [same.add(x, x)["lpips"] for x in a] == [0.0] * 11
    assert same.finish() == {"fid": pytest.approx(0, abs=1e-9), "fvd": pytest.approx(0, abs=1e-9)}
    with pytest.raises(UsageError, match="FVD needs at least 2 clips of 4 frames every 3: 7 frames"):
        s.check(6, 32, 32)
    with pytest.raises(UsageError, match="FID needs at least 2 frames"):
        LearnedSettings(fid=True).check(1, 32, 32)
    with pytest.raises(UsageError, match=r"LPIPS \(alex\) needs frames of at least 31 pixels"):
        LearnedSettings(lpips="alex").check(2, 64, 30)
    LearnedSettings(lpips="alex").check(2, 31, 31)
    assert len(AlexNetFeatures()(torch.zeros(1, 3, 31, 31))) == 5
    LearnedSettings(lpips="vgg").check(2, 16, 16)
    assert len(VGG16Features()(torch.zeros(1, 3, 16, 16))) == 5


# ---------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_eval_learned_metrics(tmp_path: Path) -> None:
    from clirun import mfollow, one_line_error

    pair = tmp_path / "pair"
    assert mfollow("synth", str(pair), "--seed", "3", "--frames", "8", "--size", "64", "-q").returncode == 0
    src, gt = str(pair / "source.mp4"), str(pair / "edit_gt.mp4")
    one_line_error(mfollow("eval", src, gt, "--lpips", "alex"), 3, "mfollow weights download lpips-alex")
    weights = tmp_path / "w"
    write_learned_weights(weights)
    args = ["eval", src, gt, "--lpips", "alex", "--fid", "--fvd", "--fvd-clip", "4", "--fvd-stride", "2"]
    r = mfollow(*args, "--weights", str(weights), "--json", "--per-frame", str(tmp_path / "f.csv"))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report["learned"]) == {"lpips", "fid", "fvd"} and "4-frame clips every 2" in report["learned"]["fvd"]
    summary = report["summary"]
    assert summary["lpips"] > 0 and summary["fid"] > 0 and summary["fvd"] > 0
    rows = list(csv.DictReader((tmp_path / "f.csv").open()))
    assert len(rows) == 8 and np.mean([float(r["lpips"]) for r in rows]) == pytest.approx(summary["lpips"])
    r = mfollow("eval", gt, gt, "--lpips", "alex", "--fid", "--weights", str(weights), "--json")
    same = json.loads(r.stdout)["summary"]
    assert same["lpips"] == 0.0 and abs(same["fid"]) < 1e-6
    one_line_error(mfollow(*args[:-1], "8", "--weights", str(weights)), 2, "FVD needs at least 2 clips")
    one_line_error(mfollow("eval", src, gt, "--lpips", "squeeze"), 2, "squeeze")
