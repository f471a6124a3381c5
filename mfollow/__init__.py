"""mfollow: video motion editing with MotionFollower (lightweight controllers + score guidance).

The package root stays import-light on purpose: ``mfollow --help`` must not import torch, av,
diffusers or transformers. Heavy modules are imported inside the commands that need them;
``MotionFollowerPipeline`` (:mod:`mfollow.pipeline`) is imported on first use.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["EditRequest", "MotionFollowerPipeline", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("MotionFollowerPipeline", "EditRequest"):
        from mfollow import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'mfollow' has no attribute {name!r}")
