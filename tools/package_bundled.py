"""Put a trained tiny bundle and SegDiT into the package as the bundled demo weights (float16).

    python tools/package_bundled.py VIDEO_RUN/bundle MASK_RUN/segdit

Writes ``mfollow/assets/weights/{tiny,segdit}/`` and prints the SHA-256 table to paste into
``mfollow.weights.registry.BUNDLED_SHA256`` (the tests compare the files with it).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

from mfollow.io.hashing import sha256_file
from mfollow.models.bundle import ModelBundle
from mfollow.preprocess.masks.segdit import SegDiT
from mfollow.weights.registry import BUNDLED, get_component


def main() -> None:
    bundle_dir, segdit_dir = Path(sys.argv[1]), Path(sys.argv[2])
    bundle = ModelBundle.from_pretrained(bundle_dir)
    if bundle.preset != "tiny":
        raise SystemExit(f"{bundle_dir}: a {bundle.preset} bundle, not tiny")
    shutil.rmtree(BUNDLED, ignore_errors=True)
    bundle.to("cpu", torch.float16).save_pretrained(BUNDLED / "tiny")
    SegDiT.from_pretrained(str(segdit_dir)).to(torch.float16).save_pretrained(
        str(BUNDLED / "segdit"), safe_serialization=True
    )
    for config in sorted(BUNDLED.rglob("config.json")):  # no build machine's paths in the package
        data = json.loads(config.read_text())
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    sums = {
        name: {f.path: sha256_file(BUNDLED / name / f.path) for f in get_component(name).files}
        for name in ("tiny", "segdit")
    }
    print(json.dumps(sums, indent=4))


if __name__ == "__main__":
    main()
