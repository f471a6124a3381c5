"""mfollow: video motion editing with MotionFollower (lightweight controllers + score guidance).

The package root stays import-light on purpose: ``mfollow --help`` must not import torch, av,
diffusers or transformers. ``MotionFollowerPipeline`` and ``EditRequest`` (:mod:`mfollow.edit`) are
imported on first use. Nothing inside the package imports this root module.
"""

from typing import Any

from mfollow.version import __version__

__all__ = ["EditRequest", "MotionFollowerPipeline", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "MotionFollowerPipeline":
        from mfollow.edit.pipeline import MotionFollowerPipeline

        return MotionFollowerPipeline
    if name == "EditRequest":
        from mfollow.edit.request import EditRequest

        return EditRequest
    raise AttributeError(f"module 'mfollow' has no attribute {name!r}")
