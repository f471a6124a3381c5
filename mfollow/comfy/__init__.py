"""mfollow's ComfyUI node pack (docs/comfyui.md).

This folder is the pack: link or copy it into ``ComfyUI/custom_nodes/`` (with mfollow installed in
ComfyUI's Python), and ComfyUI loads the nodes listed here. Nothing in it imports ComfyUI at import
time, so the nodes also run (and are tested) as plain Python.
"""

from mfollow.comfy.nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
