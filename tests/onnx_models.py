"""Tiny ONNX models with the real DWPose models' input and output signatures: their outputs are
fixed tensors chosen by the test (plus 0 x the input, so the input is really consumed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def constant_model(path: Path, input_name: str, input_shape: list[int], outputs: dict[str, np.ndarray]) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMean", [input_name], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["z"]),
    ]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outs = []
    for name, value in outputs.items():
        inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}_value"))
        nodes.append(helper.make_node("Add", [f"{name}_value", "z"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)], outs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def detector(path: Path, cells: dict[int, tuple[float, float, float, float, float, int]]) -> Path:
    """yolox_l-like: input images (1, 3, 640, 640) -> (1, 8400, 85); ``cells`` sets raw
    (dx, dy, log w, log h, objectness, class) at grid cell indices; every other cell scores 0."""
    out = np.zeros((1, 8400, 85), np.float32)
    out[0, :, 2:4] = 0.0
    for cell, (dx, dy, lw, lh, obj, cls) in cells.items():
        out[0, cell, :4] = (dx, dy, lw, lh)
        out[0, cell, 4] = obj
        out[0, cell, 5 + cls] = 1.0
    return constant_model(path, "images", [1, 3, 640, 640], {"output": out})


def pose_model(path: Path, peaks: np.ndarray, value: float = 0.9) -> Path:
    """dw-ll_ucoco_384-like: input (1, 3, 384, 288) -> simcc_x (1, 133, 576), simcc_y (1, 133, 768);
    keypoint k peaks at SimCC indices ``peaks[k] = (ix, iy)`` with height ``value``."""
    sx, sy = np.zeros((1, 133, 576), np.float32), np.zeros((1, 133, 768), np.float32)
    for k, (ix, iy) in enumerate(peaks):
        sx[0, k, ix], sy[0, k, iy] = value, value
    return constant_model(path, "input", [1, 3, 384, 288], {"simcc_x": sx, "simcc_y": sy})
