"""The authors' MotionFollower checkpoints, fetched from the Google Drive folder their README links
(with ``gdown``, the maintained Drive downloader) and imported as ``weights import --official``
does: the key census against the preset is the check, and the stamp records the SHA-256 of the
files as downloaded (the authors publish no hashes to pin them by).

Everything happens in staging folders beside the destination; the component folder appears only
when the download and the import both succeeded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from mfollow.runtime.errors import WeightsError
from mfollow.weights.registry import OFFICIAL_FILES, data_dir

#: The folder linked from the authors' README (github.com/Francis-Rings/MotionFollower).
OFFICIAL_DRIVE_FOLDER = "1yWRNmd4-vbJfV1Ji_zhpNSwNpuJVat7o"
GET_GDOWN = "pip install 'mfollow[official]' (or: pip install gdown)"


def fetch_drive_folder(folder_id: str, output: Path) -> list[Path]:
    """Download a public Drive folder into ``output`` with gdown; the files it wrote.

    Raises:
        WeightsError: gdown is not installed, or the download failed.
    """
    try:
        import gdown
    except ImportError:
        raise WeightsError("downloading the official checkpoints needs gdown", hint=GET_GDOWN) from None
    try:
        files = gdown.download_folder(id=folder_id, output=str(output), quiet=True, use_cookies=False)
    except Exception as exc:  # gdown's own errors (quota, permissions, a changed page) and network errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot download the Google Drive folder {folder_id} ({first})", hint=_BY_HAND) from exc
    if not files:
        raise WeightsError(f"the Google Drive folder {folder_id} gave no files", hint=_BY_HAND)
    return [Path(f) for f in files]


_BY_HAND = (
    "download it by hand from github.com/Francis-Rings/MotionFollower, then: mfollow weights import --official DIR"
)


def download_official(
    to: Path | None = None,
    *,
    preset: str = "sd15",
    weights: Path | None = None,
    fetch: Callable[[str, Path], list[Path]] | None = None,
    folder_id: str = OFFICIAL_DRIVE_FOLDER,
) -> Path:
    """Fetch the official release and install it as the ``motionfollower`` component under ``to``
    (default: the user data folder). ``weights``: where the base ``sd-image-variations`` U-Net is
    looked for (it fills keys the release lacks). ``fetch``: the downloader (tests pass their own).

    Raises:
        WeightsError: the download failed, a file is missing, or the census refused the files.
    """
    from mfollow.io.hashing import sha256_file
    from mfollow.models.official import base_unet_state, import_official
    from mfollow.weights.stamps import write_stamp

    root = Path(to) if to is not None else data_dir()
    final = root / "motionfollower"
    raw, staging = root / ".motionfollower.download", root / ".motionfollower.partial"
    for folder in (raw, staging):
        shutil.rmtree(folder, ignore_errors=True)
    try:
        raw.mkdir(parents=True)
        files = (fetch or fetch_drive_folder)(folder_id, raw)
        found: dict[str, Path] = {}
        for name in OFFICIAL_FILES:  # wherever the folder keeps them (the release nests a subfolder)
            matches = [p for p in files if p.name == name and p.is_file()]
            if not matches:
                raise WeightsError(f"the Google Drive folder {folder_id} holds no {name}", hint=_BY_HAND)
            found[name] = matches[0]
        flat = raw / ".flat"
        flat.mkdir()
        for name, path in found.items():
            os.link(path, flat / name)  # the import reads one folder; hard links cost nothing
        downloaded = {name: {"size": p.stat().st_size, "sha256": sha256_file(p)} for name, p in found.items()}
        import_official(flat, staging, preset=preset, base=base_unet_state(weights))
        write_stamp(staging, source=f"google-drive:{folder_id}", preset=preset, downloaded=downloaded)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except OSError as exc:
        raise WeightsError(f"{root}: cannot install the official checkpoints ({exc.strerror or exc})") from exc
    finally:
        shutil.rmtree(raw, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    return final
