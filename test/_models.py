"""Small real ONNX models built by the tests, with their model cards.

- ``conv_model``: a torch conv net with random weights exported by ``torch.onnx.export`` (dynamic H, W).
- ``plane_model``: an ONNX graph whose output is the exact metric disparity of a known plane on its fixed
  input grid (disparity of a plane is affine in pixel coordinates, so bilinear resizing keeps it exact);
  it multiplies its input by zero so the image really flows through the runtime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from depth_node.core.camera import PinholeCamera


def write_card(path: Path, weights: str, output: dict, input_rules: dict | None = None, name: str = "test-model") -> Path:
    card = {"name": name, "family": "onnx", "license": "Apache-2.0", "weights": weights, "output": output}
    if input_rules:
        card["input"] = input_rules
    path.write_text(yaml.safe_dump(card))
    return path


def conv_net(seed: int = 0):  # noqa: ANN201 - torch is imported lazily
    """A 2-layer conv net → softplus + 0.5 (metres, always positive), random weights from ``seed``."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.c2 = torch.nn.Conv2d(8, 1, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.softplus(self.c2(torch.relu(self.c1(x)))) + 0.5

    torch.manual_seed(seed)
    return Net().eval()


def conv_model(folder: Path, seed: int = 0, invariance: str = "metric") -> Path:
    """``conv_net(seed)`` exported to ONNX with dynamic H, W, and its card; returns the card path."""
    import warnings

    import torch

    onnx_path = folder / "conv.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, still exact
        torch.onnx.export(
            conv_net(seed), torch.zeros(1, 3, 64, 80), str(onnx_path), dynamo=False, input_names=["image"],
            output_names=["depth"], dynamic_axes={"image": {2: "h", 3: "w"}, "depth": {2: "h", 3: "w"}},
        )
    return write_card(folder / "conv.yaml", "conv.onnx", {"space": "depth", "invariance": invariance},
                      {"long_side": 96, "multiple_of": 8, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})


def plane_disparity(camera: PinholeCamera, normal: np.ndarray, offset: float) -> np.ndarray:
    """Disparity (1/z) on ``camera``'s grid of the plane n·X = offset (camera frame): 1/z = n·(x/z, y/z, 1)/offset."""
    u = (np.arange(camera.width) - camera.cx) / camera.fx
    v = (np.arange(camera.height) - camera.cy) / camera.fy
    return ((normal[0] * u[None, :] + normal[1] * v[:, None] + normal[2]) / offset).astype(np.float32)


def plane_model(folder: Path, model_camera: PinholeCamera, normal: np.ndarray, offset: float) -> Path:
    """ONNX model outputting the plane's metric disparity on ``model_camera``'s grid; returns the card path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = model_camera.height, model_camera.width
    grid = plane_disparity(model_camera, normal, offset)[None, None]
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1], keepdims=1),
            helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "grid"], ["disparity"]),
        ],
        "plane",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("disparity", TensorProto.FLOAT, [1, 1, h, w])],
        [numpy_helper.from_array(np.zeros((1,), np.float32), "zero"), numpy_helper.from_array(grid, "grid")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "plane.onnx"))
    return write_card(folder / "plane.yaml", "plane.onnx", {"space": "disparity", "invariance": "metric"}, name="plane")


def tiny_depth_anything(folder: Path, kind: str = "relative", seed: int = 0, long_side: int = 98) -> Path:
    """A tiny Depth Anything V2 (DINOv2 backbone) built from configs, saved in Hugging Face format, + its card."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(seed)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            out_features=["stage1", "stage2"], reshape_hidden_states=False, image_size=56, patch_size=14)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, fusion_hidden_size=16, head_hidden_size=8,
                                 neck_hidden_sizes=[8, 16], reassemble_factors=[4, 2], patch_size=14,
                                 depth_estimation_type=kind, max_depth=20)
    model = DepthAnythingForDepthEstimation(config).eval()
    weights = folder / f"da_{kind}"
    model.save_pretrained(str(weights))
    output = {"space": "disparity", "invariance": "affine"} if kind == "relative" else {"space": "depth", "invariance": "metric"}
    card = {"name": f"tiny_da_{kind}", "family": "depth_anything_v2", "license": "Apache-2.0", "weights": weights.name,
            "input": {"long_side": long_side, "multiple_of": 14, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                      "interpolation": "cubic"},
            "output": output}
    path = folder / f"da_{kind}.yaml"
    path.write_text(yaml.safe_dump(card))
    return path
