"""Weights stored as float16, computed in float32: half the file size of a shipped model.

``depth-node train --store float16`` rounds the torch weights to float16 values (:func:`round_to_float16`), saves the
safetensors file in float16 and rewrites the ONNX export so that every float initializer is kept as float16 behind a
``Cast`` to float32 (:func:`store_initializers_as_float16`). ONNX Runtime folds those casts when it loads the model,
so inference runs in float32 as before; only the weights' last bits differ (relative output change ~1e-4, up to ~2e-3
at worst: batch norm folded into the convolutions by the exporter is rounded a second time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

STORES = ("float32", "float16")
SMALLEST = 16  # tensors with fewer elements (scalars, shapes' constants) stay float32: nothing to save there


def round_to_float16(model: Any) -> None:
    """Round every floating-point parameter and buffer of ``model`` to the nearest float16 value, in place (dtype stays)."""
    import torch

    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def store_initializers_as_float16(path: Path) -> None:
    """Rewrite the ONNX file at ``path``: float32 initializers of ≥ ``SMALLEST`` elements become float16 ones, each read
    through a Cast node under its old name, so the graph computes as before."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    for initializer in graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT or int(np.prod(initializer.dims)) < SMALLEST:
            continue
        name = initializer.name
        values = numpy_helper.to_array(initializer).astype(np.float16)
        initializer.CopyFrom(numpy_helper.from_array(values, f"{name}__float16"))
        casts.append(helper.make_node("Cast", [f"{name}__float16"], [name], to=onnx.TensorProto.FLOAT, name=f"{name}__to_float32"))
    nodes = [*casts, *graph.node]  # a cast before its readers keeps the graph topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
