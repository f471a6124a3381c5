"""``mfollow weights ...``: list, download, import the official release, inspect, verify
(added to the app by :mod:`mfollow.cli`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mfollow.cli.common import DebugOpt, JsonOpt, QuietOpt, emit_json, guard, stderr_line

weights_app = typer.Typer(
    help="Model weights: what is needed and present, download, import the official release, inspect, verify.",
    no_args_is_help=True,
)
WeightsDirOpt = Annotated[
    Path | None, typer.Option("--weights", help="Folder searched first for weights (then $MFOLLOW_WEIGHTS).")
]


@weights_app.command("list")
def weights_list(weights: WeightsDirOpt = None, json_out: JsonOpt = False, debug: DebugOpt = False) -> None:
    """What each component is, where it comes from, and whether (and where) it is present."""
    with guard(debug):
        from mfollow.weights.registry import REGISTRY, locate, require_folder

        require_folder(weights)
        rows = []
        for name, comp in REGISTRY.items():
            loc = locate(name, weights)
            state = "present" if loc.path else ("incomplete" if loc.missing_files else "missing")
            source = comp.source
            path = None if loc.path is None else str(loc.path)
            rows.append({"name": name, "state": state, "origin": loc.origin, "path": path, "source": source})
            rows[-1].update(used_by=comp.used_by, description=comp.description)
        if json_out:
            emit_json({"components": rows})
            return
        for r in rows:
            where = f"{r['origin']}: {r['path']}" if r["path"] else r["source"]
            print(f"{r['name']:<20} {r['state']:<10} {where}")


class AllFor(StrEnum):
    sd15 = "sd15"


@weights_app.command("download")
def weights_download(
    components: Annotated[
        list[str] | None, typer.Argument(help="Components to fetch (see 'weights list').", metavar="[NAME]...")
    ] = None,
    all_for: Annotated[
        AllFor | None,
        typer.Option("--all-for", help="Everything this preset and DWPose need, less what is installed already."),
    ] = None,
    to: Annotated[Path | None, typer.Option("--to", help="Install here instead of the user data folder.")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Download components, checked, then installed.

    From a pinned hub revision, a SHA-256-pinned HTTPS file, or the authors' Drive folder (gdown).
    Example: mfollow weights download --all-for sd15
    """
    with guard(debug):
        from mfollow.runtime.errors import UsageError
        from mfollow.weights.download import check_downloadable, download
        from mfollow.weights.registry import PRESET_COMPONENTS, get_component, locate

        names = list(components or [])
        skipped: list[str] = []
        if all_for is not None:
            for name in PRESET_COMPONENTS[all_for.value]:
                if name in names:
                    continue
                (skipped if locate(name, to).path is not None else names).append(name)
        if not names and not skipped:
            raise UsageError("name the components to download, or pass --all-for PRESET")
        for name in names:
            check_downloadable(name)  # unknown or not downloadable here: fail before any download
        for name in skipped:
            stderr_line(f"{name}: already installed in {locate(name, to).path}", quiet=quiet)
        done = {}
        for name in names:

            def report(f: str, i: int, n: int, name: str = name) -> None:
                stderr_line(f"{name}: {f} ({i + 1}/{n})", quiet=quiet)

            stderr_line(f"{name}: downloading from {get_component(name).source}", quiet=quiet)
            done[name] = str(download(name, to, progress=report))
        if json_out:
            emit_json({"installed": done, "already_installed": skipped})
        else:
            for name, path in done.items():
                stderr_line(f"{name}: installed in {path}", quiet=quiet)


@weights_app.command("import")
def weights_import(
    official: Annotated[
        Path, typer.Option("--official", help="Folder with denoising_unet.pth, motion_module.pth, poctr.pth.")
    ],
    to: Annotated[
        Path | None, typer.Option("--to", help="Weights root to write into (default: user data folder).")
    ] = None,
    preset: Annotated[str, typer.Option("--preset", help="Topology the files are for.")] = "sd15",
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="Keep initial values for missing keys.")
    ] = False,
    allow_unexpected: Annotated[bool, typer.Option("--allow-unexpected", help="Ignore keys the model lacks.")] = False,
    weights: WeightsDirOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Convert the official MotionFollower checkpoints into mfollow's safetensors layout."""
    with guard(debug):
        from mfollow.weights.registry import check_official_folder, data_dir

        check_official_folder(official)  # before torch and the checkpoints load
        from mfollow.models.official import base_unet_state, import_official

        dest = (to if to is not None else data_dir()) / "motionfollower"
        censuses = import_official(
            official, dest, preset=preset, base=base_unet_state(weights),
            allow_missing=allow_missing, allow_unexpected=allow_unexpected,
        )  # fmt: skip
        if json_out:
            emit_json({"installed": str(dest), "census": {k: c.to_json() for k, c in censuses.items()}})
            return
        for name, census in censuses.items():
            stderr_line(f"{name}: {census.summary()}", quiet=quiet)
            for old, new in census.renamed.items():
                stderr_line(f"  renamed  {old} -> {new}", quiet=quiet)
            for key, why in list(census.dropped.items())[:3]:
                stderr_line(f"  dropped  {key} ({why})", quiet=quiet)
            if len(census.dropped) > 3:
                stderr_line(f"  dropped  ... {len(census.dropped) - 3} more of the same kind", quiet=quiet)
        stderr_line(f"installed in {dest}", quiet=quiet)


@weights_app.command("inspect")
def weights_inspect(
    file: Annotated[Path, typer.Argument(help="A .safetensors or .pth checkpoint.", metavar="FILE")],
    preset: Annotated[str, typer.Option("--preset", help="Topology to compare with.")] = "sd15",
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Compare a checkpoint's keys, shapes and dtypes with a preset's U-Net or PoCtr."""
    with guard(debug):
        from mfollow.models.checkpoint import load_state_dict

        loaded = load_state_dict(file)  # a corrupt file is found before the model's libraries load
        from mfollow.models.official import inspect_file

        which, census = inspect_file(file, preset, loaded)
        if json_out:
            emit_json({"file": str(file), "preset": preset, "model": which, **census.to_json()})
            return
        print(f"{file}: compared with the {preset} {which}: {census.summary()}")
        print(f"dtypes: {', '.join(f'{k} x{v}' for k, v in census.dtypes.items())}")
        for title, keys in (("missing", census.missing), ("unexpected", census.unexpected)):
            for key in keys[:5]:
                print(f"  {title:<10} {key}")
            if len(keys) > 5:
                print(f"  {title:<10} ... {len(keys) - 5} more")
        for key, (a, b) in list(census.shape_mismatches.items())[:5]:
            print(f"  shape      {key}: file {a}, model {b}")
        if census.dtype_mismatches:
            print(f"  dtype      {len(census.dtype_mismatches)} tensors are not float32 (imports convert them)")


@weights_app.command("verify")
def weights_verify(
    components: Annotated[
        list[str] | None, typer.Argument(help="Default: every present component.", metavar="[NAME]...")
    ] = None,
    weights: WeightsDirOpt = None,
    json_out: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Re-hash installed files against the known SHA-256 sums (or their install stamps)."""
    with guard(debug):
        from mfollow.weights.registry import REGISTRY, locate, require_folder
        from mfollow.weights.stamps import verify

        require_folder(weights)
        names = components or [n for n in REGISTRY if locate(n, weights).path is not None]
        if not names:
            stderr_line("no weights are installed (see 'mfollow weights list')")
        results = {name: verify(name, weights) for name in names}
        if json_out:
            emit_json({"verified": results})
            return
        for name, files in results.items():
            for f, state in files.items():
                print(f"{name:<20} {state:<13} {f}")
