"""torch module → ONNX file, checked against torch: the one export routine (``depth-node export``, ``depth-node train``).

The file is written with the TorchScript exporter (opset 17 by default), then ONNX Runtime (CPU) runs it on the
example input and its output is compared with torch's: the largest difference relative to the largest value must
stay within ``tolerance``, else the export is not trustworthy and :class:`ExportError` says so. ``dynamic`` makes the
batch, height and width axes free (a convolutional network that runs at any size and takes ensemble members as one
batch); otherwise the example's shape is baked in (a ViT's patch grid, for instance).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from depth_node.errors import DepthNodeError


class ExportError(DepthNodeError):
    """ONNX Runtime does not reproduce torch on the exported graph."""


def export_onnx(module: Any, example: Any, path: Path, *, dynamic: bool = False, tolerance: float = 1e-3,
                opset: int = 17, output_names: tuple[str, ...] = ("prediction",)) -> float:
    """Write ``module`` (eval mode) traced on ``example`` (N, C, H, W) to ``path``; return the relative error of ONNX
    Runtime against torch on ``example`` (first output), after raising :class:`ExportError` when it exceeds ``tolerance``."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {"image": {0: "batch", 2: "height", 3: "width"}} | {name: {0: "batch", 2: "height", 3: "width"} for name in output_names}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset, input_names=["image"],
                          output_names=list(output_names), dynamic_axes=axes if dynamic else None)
        reference = module(example)
    reference = (reference[0] if isinstance(reference, (tuple, list)) else reference).float().numpy()
    error = onnx_error(path, example.float().numpy(), reference)
    if not error <= tolerance:
        raise ExportError(f"{path}: ONNX Runtime disagrees with torch by {error:.2e} relative (tolerance {tolerance:g}): "
                          "the export is not trustworthy")
    return error


def onnx_error(path: Path, x: np.ndarray, reference: np.ndarray) -> float:
    """max |ONNX Runtime (CPU) − reference| / max |reference| of the graph's first output on input ``x``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    if got.shape != reference.shape:
        raise ExportError(f"{path}: ONNX output shape {got.shape} differs from torch's {reference.shape}")
    return float(np.abs(got - reference).max() / max(float(np.abs(reference).max()), 1e-12))
