"""Small real ONNX models built by the tests, with their model cards.

- ``conv_model``: a torch conv net with random weights exported by ``torch.onnx.export`` (dynamic H, W).
- ``plane_model``: an ONNX graph whose output is the exact metric disparity of a known plane on its fixed
  input grid (disparity of a plane is affine in pixel coordinates, so bilinear resizing keeps it exact);
  it multiplies its input by zero so the image really flows through the runtime.
"""

from __future__ import annotations

from pathlib import Path

import cv2
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


def fixed_output_model(folder: Path, depth: np.ndarray, confidence: np.ndarray | None = None, name: str = "fixed") -> Path:
    """ONNX model returning the metric depth grid ``depth`` (h, w) — NaN/Inf kept, the faults a damaged model shows —
    and, when given, the confidence grid as a second output (``output.confidence_index: 1``); the image flows through
    the runtime (× 0). Fixed input of ``depth``'s size; returns the card path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = depth.shape
    nodes = [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1], keepdims=1),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
             helper.make_node("Add", ["nothing", "depth_grid"], ["depth"])]
    outputs = [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, h, w])]
    grids = [numpy_helper.from_array(np.zeros((1,), np.float32), "zero"),
             numpy_helper.from_array(depth.astype(np.float32)[None, None], "depth_grid")]
    if confidence is not None:
        nodes.append(helper.make_node("Add", ["nothing", "confidence_grid"], ["confidence"]))
        outputs.append(helper.make_tensor_value_info("confidence", TensorProto.FLOAT, [1, 1, h, w]))
        grids.append(numpy_helper.from_array(confidence.astype(np.float32)[None, None], "confidence_grid"))
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])], outputs, grids)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / f"{name}.onnx"))
    output = {"space": "depth", "invariance": "metric"} | ({"confidence_index": 1} if confidence is not None else {})
    return write_card(folder / f"{name}.yaml", f"{name}.onnx", output, name=name)


def slow_model(folder: Path, iterations: int = 10**7, size: tuple[int, int] = (48, 64)) -> Path:
    """ONNX model whose forward pass multiplies a 256×256 matrix by the identity ``iterations`` times (an ONNX Loop:
    ~0.15 ms each here, so the default runs ~25 min, like a diffusion model on a slow CPU) and then returns 2 m
    everywhere; the image flows into the loop's start. Fixed input ``size``; returns the card path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n, (h, w) = 256, size
    body = helper.make_graph(
        [helper.make_node("MatMul", ["state_in", "eye"], ["state_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [n, n])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [n, n])],
        [numpy_helper.from_array(np.eye(n, dtype=np.float32), "eye")])
    nodes = [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
             helper.make_node("Add", ["start", "nothing"], ["state0"]),
             helper.make_node("Loop", ["trips", "true", "state0"], ["state"], body=body),
             helper.make_node("ReduceMean", ["state"], ["state_mean"], axes=[0, 1], keepdims=0),
             helper.make_node("Mul", ["state_mean", "zero"], ["still_nothing"]),
             helper.make_node("Add", ["depth_grid", "still_nothing"], ["depth"])]
    constants = [numpy_helper.from_array(np.zeros((), np.float32), "zero"), numpy_helper.from_array(np.ones((n, n), np.float32), "start"),
                 numpy_helper.from_array(np.array(iterations, np.int64), "trips"), numpy_helper.from_array(np.array(True), "true"),
                 numpy_helper.from_array(np.full((1, 1, h, w), 2.0, np.float32), "depth_grid")]
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])],
                              [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 1, h, w])], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "slow.onnx"))
    return write_card(folder / "slow.yaml", "slow.onnx", {"space": "depth", "invariance": "metric"}, name="slow")


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


DIFFUSION_OUTPUT = {"e2e_ft": "depth", "lotus_d": "disparity", "depthmaster": "sqrt_disparity", "marigold": "depth"}


def tiny_diffusion(folder: Path, variant: str = "e2e_ft", conditioner: str = "empty_prompt", tiny_decoder: bool = False,
                   prediction: str = "v_prediction", steps: int = 1, seed: int = 0) -> Path:
    """A tiny SD2-style latent-diffusion depth model in diffusers layout (UNet, VAE, DDIM scheduler, CLIP text
    encoder + a minimal tokenizer; optionally an AutoencoderTiny decoder and a CIDE conditioner), + its card."""
    import json

    import torch
    from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    root = folder / f"{variant}_{conditioner}{'_tiny' if tiny_decoder else ''}"
    root.mkdir(parents=True, exist_ok=True)
    dim = 16
    noise_latent = variant in ("e2e_ft", "marigold")
    lotus = variant == "lotus_d"
    UNet2DConditionModel(
        sample_size=8, in_channels=8 if noise_latent else 4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=dim, attention_head_dim=2, norm_num_groups=4,
        class_embed_type="projection" if lotus else None, projection_class_embeddings_input_dim=4 if lotus else None,
    ).save_pretrained(str(root / "unet"))
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  layers_per_block=1, norm_num_groups=4).save_pretrained(str(root / "vae"))
    if tiny_decoder:
        AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                        num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4).save_pretrained(str(root / "vae_tiny"))
    DDIMScheduler(prediction_type=prediction, timestep_spacing="trailing", beta_schedule="scaled_linear",
                  clip_sample=False, set_alpha_to_one=False).save_pretrained(str(root / "scheduler"))
    tok = root / "tokenizer_src"
    tok.mkdir(exist_ok=True)
    (tok / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2}))
    (tok / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(tok / "vocab.json"), str(tok / "merges.txt"), model_max_length=8).save_pretrained(str(root / "tokenizer"))
    CLIPTextModel(CLIPTextConfig(vocab_size=3, hidden_size=dim, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 max_position_embeddings=8, bos_token_id=0, eos_token_id=1, pad_token_id=1)).save_pretrained(str(root / "text_encoder"))
    if conditioner == "cide":
        cide = root / "cide"
        ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                            intermediate_size=32, num_labels=10)).save_pretrained(str(cide / "classifier"))
        save_file({"mlp.0.weight": torch.randn(12, 10) * 0.3, "mlp.0.bias": torch.zeros(12), "mlp.2.weight": torch.randn(5, 12) * 0.3,
                   "mlp.2.bias": torch.zeros(5), "embeddings": torch.randn(5, dim), "gamma": torch.ones(1)}, str(cide / "cide.safetensors"))
        (cide / "config.json").write_text(json.dumps({"image_size": 32}))
    block = {"variant": variant, "conditioner": conditioner, "decoder": "tiny" if tiny_decoder else "full", "seed": seed}
    if variant == "marigold":
        block["steps"] = steps
    if lotus:
        block["task_embedding"] = [1.0, 0.0]
    card = {"name": f"tiny_{root.name}", "family": "diffusion", "license": "Apache-2.0", "weights": root.name, "diffusion": block,
            "input": {"long_side": 48, "multiple_of": 8, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "linear"},
            "output": {"space": DIFFUSION_OUTPUT[variant], "invariance": "affine"}}
    path = folder / f"{root.name}.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


def fastdepth_reference(tflite: Path, rgb: np.ndarray) -> np.ndarray:
    """FastDepth run directly by LiteRT on an independently resized input: metres = uint8 × output scale."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)[None])
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])[0, :, :, 0].astype(np.float32) * np.float32(out["quantization"][0])
