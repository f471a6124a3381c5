"""mfollow: video motion editing with MotionFollower (lightweight controllers + score guidance).

The package root stays import-light on purpose: ``mfollow --help`` must not import torch, av,
diffusers or transformers. Heavy modules are imported inside the commands that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
