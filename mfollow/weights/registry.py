"""Where model weights come from and where they live (docs/weights.md).

A **component** is a named set of files (see :data:`REGISTRY`). Each is looked for, in order:

1. the ``--weights DIR`` given on the command line (``DIR/<component>/...``);
2. the ``MFOLLOW_WEIGHTS`` environment variable (same layout);
3. the user data folder, ``platformdirs.user_data_dir("mfollow")/weights`` (where
   ``mfollow weights download`` and ``weights import`` put files);
4. the Hugging Face cache, read offline (``try_to_load_from_cache``: never the network);
5. the weights shipped inside the package (``mfollow/assets/weights``): the bundled demo model
   ``tiny`` and its SegDiT, trained on synthetic puppets (docs/training.md).

Nothing is downloaded except by ``mfollow weights download``. Hub downloads are pinned to a
revision; files served at a plain HTTPS address (the learned metrics' backbones) are pinned by their
SHA-256 (or by the hash prefix their publisher puts in the file name, as ``torch.hub`` checks it).
Everything is checked against known SHA-256 sums, staged and moved into place only when complete, and stamped
(``.mfollow-stamp.json``: revision and per-file size/SHA-256) so ``weights verify`` can re-check.
The official MotionFollower checkpoints are on Google Drive: ``weights download motionfollower``
fetches the authors' folder with gdown and converts it as ``mfollow weights import --official DIR``
does (:mod:`mfollow.weights.drive`); ``weights download --all-for sd15`` fetches everything the sd15
preset and DWPose need.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mfollow.runtime.errors import WeightsError

ENV_VAR = "MFOLLOW_WEIGHTS"
STAMP = ".mfollow-stamp.json"
OFFICIAL_URL = "https://github.com/Francis-Rings/MotionFollower (README: Google Drive folder)"
#: The official release's checkpoint files (:func:`mfollow.models.checkpoint.read_official`).
OFFICIAL_FILES = ("denoising_unet.pth", "motion_module.pth", "poctr.pth")


def check_official_folder(directory: Path) -> None:
    """A folder holding the official release's files (:data:`OFFICIAL_FILES`), or the
    :class:`WeightsError` saying what is missing: checked before any checkpoint (or torch) loads."""
    if not directory.is_dir():
        raise WeightsError(f"{directory}: no such directory")
    absent = [name for name in OFFICIAL_FILES if not (directory / name).is_file()]
    if absent:
        raise WeightsError(f"{directory}: missing {', '.join(absent)}", hint="download the official release first")


Origin = Literal["explicit", "env", "data-dir", "hf-cache", "bundled"]
BUNDLED = Path(__file__).resolve().parent.parent / "assets" / "weights"


@dataclass(frozen=True)
class WeightFile:
    path: str  # relative to the component folder (and to the repo root for hub components)
    sha256: str | None = None
    size: int | None = None
    url: str | None = None  # a plain HTTPS source (components without a hub repo)
    sha256_prefix: str | None = None  # when the publisher gives only a prefix (torchvision, pytorch-fid)
    alternative: str | None = None  # accepted in place of ``path`` (a pickle where ``path`` is safetensors)
    git_blob: str | None = None  # a hub file's git blob id (small files the hub does not hash by SHA-256)

    def found(self, folder: Path) -> Path | None:
        """The file in ``folder``: ``path``, else its ``alternative``, else None."""
        for rel in (self.path, self.alternative):
            if rel is not None and (folder / rel).is_file():
                return folder / rel
        return None

    def matches(self, digest: str) -> bool:
        """Whether a file's SHA-256 is the one recorded (in full, or its published prefix)."""
        if self.sha256 is not None:
            return digest == self.sha256
        return self.sha256_prefix is None or digest.startswith(self.sha256_prefix)

    @property
    def expected(self) -> str | None:
        return self.sha256 or (None if self.sha256_prefix is None else f"{self.sha256_prefix}...")


@dataclass(frozen=True)
class Component:
    name: str
    description: str
    files: tuple[WeightFile, ...]
    repo_id: str | None = None  # Hugging Face repo; None: not downloadable (official release)
    revision: str | None = None
    license: str = ""
    used_by: str = ""
    how: str = ""  # how to obtain it when it cannot be downloaded
    drive_folder: str | None = None  # a Google Drive folder fetched with gdown, then imported

    @property
    def downloadable(self) -> bool:
        return self.repo_id is not None or self.drive_folder is not None or all(f.url for f in self.files)

    @property
    def source(self) -> str:
        """Where ``weights download`` fetches it from, in words."""
        if self.repo_id is not None:
            return f"{self.repo_id}@{self.revision}"
        if self.drive_folder is not None:
            return f"Google Drive folder {self.drive_folder} (gdown), imported"
        if self.downloadable:
            hosts = sorted({f.url.split("/")[2] for f in self.files if f.url})
            return f"https://{', '.join(hosts)} (pinned by SHA-256)"
        return "by hand: " + self.how


#: The bundled demo model's files.
_TINY_FILES = (
    "mfollow_bundle.json",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "poctr/config.json",
    "poctr/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "image_encoder/config.json",
    "image_encoder/model.safetensors",
)
#: SHA-256 of the files shipped in ``mfollow/assets/weights`` (docs/training.md says how they were
#: made); ``weights verify`` checks bundled components against these.
BUNDLED_SHA256: dict[str, dict[str, str]] = {
    "tiny": {
        "mfollow_bundle.json": "c8b058fb200828ca2192e156e2c1517efbf640c2ee4fbb30fe1774cf4126381d",
        "scheduler/scheduler_config.json": "7e05386c617fee6c21a455b6a940be69e5d0a8fbe7bc93fe51dcf031b75bdfa7",
        "unet/config.json": "3f8aac6c637cad7a16bbf9e3c72949cca7bfb8c84326b7cb6386b2496f536d03",
        "unet/diffusion_pytorch_model.safetensors": "3ab7ca727254401fba65a24d38888db4f39c0d98c400aaadbfbc6f3a1fe5a8fc",
        "poctr/config.json": "77340f8e6635191402a8b859cb1c7a767e6bc470e7c0ada6ecb4bc6c368ed141",
        "poctr/diffusion_pytorch_model.safetensors": "c890e356851b3a26ca94bc2f3e42d73feb536abe432a2a00b0bf22ac2441de13",
        "vae/config.json": "b228eb71c58ecdd3b531f52bf84d4f0280762cb050028c6d5a0b5e38f275bb13",
        "vae/diffusion_pytorch_model.safetensors": "843250e4ef011d8ba228ed83f879e84abd6f9d7a3d2bb6d1e509a1de57f6ab45",
        "image_encoder/config.json": "3239052061f7819a439f066f682ffd6180bcaeddaad4d5d11edc156b0293d985",
        "image_encoder/model.safetensors": "8618573e000a87ef2a87580d69bc7b451395848b8054969c1ac6626b1f0453a4",
    },
    "segdit": {
        "config.json": "2b3f8e010019b9b3de27092e62cf4bdf4a987fe0ac4b6fba08831b3cd48cb4fb",
        "diffusion_pytorch_model.safetensors": "6af9715ee34a5701eb5265b958c9e15af41f9699ebbabfab76857d28d23e0575",
    },
}

_TORCHVISION = "https://download.pytorch.org/models"
_LPIPS_V01 = "https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1"
_FID_INCEPTION = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights"
_LPIPS_ALEX_SHA = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
_LPIPS_VGG_SHA = "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"


def _hash_named(url: str) -> WeightFile:
    """A file named the torch.hub way, ``name-<first 8+ hex digits of its SHA-256>.ext``."""
    name = url.rsplit("/", 1)[1]
    return WeightFile(name, url=url, sha256_prefix=name.rsplit("-", 1)[1].split(".")[0])


def _lpips_component(net: str, trunk: str, trunk_file: str, linear_sha: str, linear_size: int) -> Component:
    """LPIPS v0.1: torchvision's ImageNet trunk and the lpips package's linear layers."""
    return Component(
        f"lpips-{net}",
        f"LPIPS v0.1 ({net}): torchvision's ImageNet {trunk} and the perceptual linear layers",
        (
            _hash_named(f"{_TORCHVISION}/{trunk_file}"),
            WeightFile(f"lpips-v0.1-{net}.pth", linear_sha, linear_size, url=f"{_LPIPS_V01}/{net}.pth"),
        ),
        license="BSD-3-Clause (torchvision, lpips)",
        used_by=f"eval --lpips {net}",
    )


_YOLOX_SHA = "7860ae79de6c89a3c1eb72ae9a2756c0ccfbe04b7791bb5880afabd97855a411"
_DWPOSE_SHA = "724f4ff2439ed61afb86fb8a1951ec39c6220682803b4a8bd4f598cd913b1843"

REGISTRY: dict[str, Component] = {
    c.name: c
    for c in (
        Component(
            "sd-image-variations",
            "base U-Net and CLIP image encoder (ViT-L/14) of Stable Diffusion image variations v2",
            (
                WeightFile("unet/config.json"),
                WeightFile("unet/diffusion_pytorch_model.safetensors", alternative="unet/diffusion_pytorch_model.bin"),
                WeightFile("image_encoder/config.json"),
                WeightFile("image_encoder/model.safetensors", alternative="image_encoder/pytorch_model.bin"),
            ),
            repo_id="lambdalabs/sd-image-variations-diffusers",
            # the tag the model card names; `weights download` resolves it to its commit and checks every
            # file against the hub's own hashes (safetensors preferred where the commit has them)
            revision="v2.0",
            license="creativeml-openrail-m",
            used_by="sd15 preset (image encoder; base weights under the official import)",
        ),
        Component(
            "sd-vae-ft-mse",
            "Stable Diffusion VAE fine-tuned with MSE (the decoder the official code uses)",
            (WeightFile("config.json"), WeightFile("diffusion_pytorch_model.safetensors")),
            repo_id="stabilityai/sd-vae-ft-mse",
            revision="c984c1eeadc00e78bcb5d6b9e1898b5545397d5d",
            license="mit",
            used_by="sd15 preset",
        ),
        Component(
            "dwpose",
            "DWPose: YOLOX-L person detector and dw-ll_ucoco_384 whole-body pose model (ONNX)",
            (
                WeightFile("yolox_l.onnx", _YOLOX_SHA, 216_746_733),
                WeightFile("dw-ll_ucoco_384.onnx", _DWPOSE_SHA, 134_399_116),
            ),
            repo_id="yzd-v/DWPose",
            revision="main",  # the files themselves are pinned by SHA-256
            license="apache-2.0",
            used_by="pose --backend dwpose",
        ),
        Component(
            "motionfollower",
            "MotionFollower's released U-Net (spatial + ReCtr + motion modules) and PoCtr, imported",
            (
                WeightFile("unet/config.json"),
                WeightFile("unet/diffusion_pytorch_model.safetensors"),
                WeightFile("poctr/config.json"),
                WeightFile("poctr/diffusion_pytorch_model.safetensors"),
            ),
            license="none stated by the authors",
            used_by="sd15 preset",
            how=f"run: mfollow weights download motionfollower (needs gdown); or download the official release "
            f"from {OFFICIAL_URL}, then run: mfollow weights import --official DIR",
            drive_folder="1yWRNmd4-vbJfV1Ji_zhpNSwNpuJVat7o",  # the folder the authors' README links
        ),
        Component(
            "segdit",
            "SegDiT person segmentation (paper Appendix A.1): mfollow's own weights",
            (WeightFile("config.json"), WeightFile("diffusion_pytorch_model.safetensors")),
            license="as mfollow",
            used_by="mask --edit-backend segdit",
            how="train it (mfollow train --stage mask) and place its segdit/ folder in a weights folder; "
            "a tiny one (128x128, synthetic puppets) ships with mfollow",
        ),
        _lpips_component("alex", "AlexNet", "alexnet-owt-7be5be79.pth", _LPIPS_ALEX_SHA, 6_009),
        _lpips_component("vgg", "VGG-16", "vgg16-397923af.pth", _LPIPS_VGG_SHA, 7_289),
        Component(
            "fid-inception",
            "FID Inception-v3 (TensorFlow's 2015-12-05 graph, as ported by pytorch-fid)",
            (_hash_named(f"{_FID_INCEPTION}/pt_inception-2015-12-05-6726825d.pth"),),
            license="Apache-2.0 (TensorFlow models; pytorch-fid)",
            used_by="eval --fid",
        ),
        Component(
            "fvd-i3d",
            "FVD I3D (Kinetics-400), StyleGAN-V's TorchScript export, from a pinned Hub mirror",
            (WeightFile("auxiliary/i3d_torchscript.pt"),),
            repo_id="ByteDance/LatentSync-1.6",
            revision="c42c7e6c8e9c213626389fa7d9a3c444b8536353",
            license="Apache-2.0 (kinetics-i3d)",
            used_by="eval --fvd",
        ),
        Component(
            "tiny",
            "the bundled demo model: tiny preset trained on synthetic puppets (docs/training.md)",
            tuple(WeightFile(p) for p in _TINY_FILES),
            license="as mfollow",
            used_by="tiny preset (the default when no sd15 weights are installed), mfollow demo",
            how="it ships with mfollow; reinstall the package, or train one (docs/training.md)",
        ),
    )
}


#: What each preset needs installed to edit real footage (the pose estimator included), in the
#: order ``weights download --all-for`` fetches them (the base U-Net before the official import,
#: which fills the keys the release lacks from it).
PRESET_COMPONENTS: dict[str, tuple[str, ...]] = {
    "sd15": ("sd-image-variations", "sd-vae-ft-mse", "dwpose", "motionfollower"),
}


def data_dir() -> Path:
    """The user data folder for weights (platform-specific)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("mfollow", appauthor=False)) / "weights"


def get_component(name: str) -> Component:
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(f"unknown weights component {name!r}; known: {', '.join(REGISTRY)}") from None


@dataclass(frozen=True)
class Location:
    component: str
    path: Path | None  # the component folder; None when not found
    origin: Origin | None
    missing_files: tuple[str, ...] = ()  # in the first root that held part of it


def roots(explicit: Path | None = None) -> list[tuple[Origin, Path]]:
    """The folders searched, in order (the Hugging Face cache is searched separately)."""
    out: list[tuple[Origin, Path]] = []
    if explicit is not None:
        out.append(("explicit", Path(explicit)))
    if os.environ.get(ENV_VAR):
        out.append(("env", Path(os.environ[ENV_VAR])))
    out.append(("data-dir", data_dir()))
    return out


def _bundled_root() -> list[tuple[Origin, Path]]:
    return [("bundled", BUNDLED)] if BUNDLED.is_dir() else []


def require_folder(explicit: Path | None) -> None:
    """Refuse an explicit weights folder that does not exist (a typo, for commands that would
    otherwise quietly report on the other roots)."""
    if explicit is not None and not Path(explicit).is_dir():
        raise WeightsError(f"--weights {explicit}: no such folder")


def locate(name: str, explicit: Path | None = None) -> Location:
    """Find a component without touching the network."""
    comp = get_component(name)
    partial: tuple[str, ...] = ()
    for origin, root in roots(explicit):
        folder = root / name
        missing = tuple(f.path for f in comp.files if f.found(folder) is None)
        if not missing:
            return Location(name, folder, origin)
        if len(missing) < len(comp.files) and not partial:
            partial = missing
    if comp.repo_id is not None:
        snapshot = _hf_cached_snapshot(comp)
        if snapshot is not None:
            return Location(name, snapshot, "hf-cache")
    for origin, root in _bundled_root():
        folder = root / name
        if all(f.found(folder) is not None for f in comp.files):
            return Location(name, folder, origin)
    return Location(name, None, None, partial)


def _hf_cached_snapshot(comp: Component) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    folder = None
    for f in comp.files:
        for rel in (f.path, f.alternative):
            found = None if rel is None else try_to_load_from_cache(comp.repo_id, rel, revision=comp.revision)
            if isinstance(found, str):
                folder = Path(found[: -len(rel)])  # type: ignore[arg-type]  # the snapshot root
                break
        else:
            return None
    return folder


def resolve(name: str, explicit: Path | None = None) -> Path:
    """The folder of a component, or :class:`WeightsError` saying how to get it."""
    loc = locate(name, explicit)
    if loc.path is not None:
        return loc.path
    comp = get_component(name)
    how = comp.how if comp.how or not comp.downloadable else f"run: mfollow weights download {name}"
    detail = f" (incomplete: {', '.join(loc.missing_files)} missing)" if loc.missing_files else ""
    if explicit is not None and not Path(explicit).is_dir():
        detail += f" (--weights {explicit}: no such folder)"
    raise WeightsError(f"weights '{name}' not found{detail}", hint=how)
