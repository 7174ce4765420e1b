"""torch: device and precision chosen in one place, preprocessing on the model's device.

Precisions: ``fp32``, ``fp16``, ``bf16``. In reduced precision, normalization layers (LayerNorm, GroupNorm,
BatchNorm) stay in fp32 — their statistics overflow in fp16 (the black-frame / NaN reports users file) — with
inputs cast up and outputs cast back around them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from depth_node.core.estimator import PRECISIONS
from depth_node.errors import ModelLoadError


def torch_device(device: str) -> Any:
    """'cpu' or 'cuda[:N]' → torch.device; a clear error when CUDA is asked for but absent."""
    import torch

    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} asked for, but torch sees no CUDA GPU (torch {torch.__version__}); set device: cpu")
        return torch.device(device)
    raise ModelLoadError(f"torch device must be cpu or cuda[:N], got {device!r}")


def torch_dtype(precision: str) -> Any:
    import torch

    if precision not in PRECISIONS:
        raise ModelLoadError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def _norms_in_fp32(module: Any) -> int:
    """Keep every normalization layer in fp32 inside a reduced-precision module; returns how many."""
    import torch

    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._BatchNorm)

    def upcast(layer: Any, args: tuple) -> tuple:
        layer._depth_node_dtype = args[0].dtype  # the dtype to hand back to the next layer
        return tuple(a.float() if torch.is_tensor(a) else a for a in args)

    def downcast(layer: Any, args: tuple, out: Any) -> Any:
        return out.to(layer._depth_node_dtype) if torch.is_tensor(out) else out

    count = 0
    for layer in module.modules():
        if isinstance(layer, norm_types):
            layer.float()
            layer.register_forward_pre_hook(upcast)
            layer.register_forward_hook(downcast)
            count += 1
    return count


def prepare_module(
    module: Any, device: str, precision: str, channels_last: bool = False, compile_mode: str = "off"
) -> tuple[Any, Any, Any]:
    """Move ``module`` to its device and precision for inference, optionally ``torch.compile`` it (fixed shapes:
    a new camera resolution recompiles once; ``reduce-overhead`` also captures CUDA graphs on a GPU).
    Returns (module, device, dtype)."""
    import torch

    dev, dtype = torch_device(device), torch_dtype(precision)
    if dev.type == "cpu" and dtype is torch.float16:
        raise ModelLoadError("fp16 on the CPU is slower than fp32 and loses precision: use precision fp32 or bf16 on cpu")
    module = module.eval().to(dev)
    if dtype is not torch.float32:
        module = module.to(dtype)
        _norms_in_fp32(module)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    for p in module.parameters():
        p.requires_grad_(False)
    if compile_mode != "off":
        if compile_mode not in ("default", "reduce-overhead", "max-autotune"):
            raise ModelLoadError(f"torch_compile must be off, default, reduce-overhead or max-autotune, got {compile_mode!r}")
        module = torch.compile(module, mode=compile_mode, dynamic=False)
    return module, dev, dtype


def rules_to_tensor(rgb: np.ndarray, rules: Any, device: Any, dtype: Any) -> Any:
    """uint8 (H, W, 3) RGB → the model input a card's InputRules describe, as a tensor on ``device``."""
    size = rules.target_size(rgb.shape[0], rgb.shape[1])
    return image_to_tensor(rgb, size, rules.mean, rules.std, rules.scale, device, dtype, rules.interpolation)


def image_to_tensor(
    rgb: np.ndarray, size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...], scale: float,
    device: Any, dtype: Any, interpolation: str = "bicubic",
) -> Any:
    """uint8 (H, W, 3) RGB → normalized (1, 3, h, w) tensor on ``device``: the uint8 pixels cross to the device
    once (a quarter of float32's bytes) and everything else happens there."""
    import torch
    import torch.nn.functional as F

    # torch wants a writable array; a read-only view (e.g. of a bag record's bytes) is copied, once, here
    x = torch.from_numpy(np.require(rgb, requirements=("C", "W"))).to(device, non_blocking=True)
    x = x.permute(2, 0, 1)[None].float()
    if tuple(x.shape[-2:]) != tuple(size):
        shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        mode = {"cubic": "bicubic", "linear": "bilinear", "area": "area"}.get(interpolation, interpolation)
        if mode == "area":
            x = F.interpolate(x, size=size, mode="area")
        else:
            x = F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=shrinking)
    return normalize(x, mean, std, scale).to(dtype)


def normalize(x: Any, mean: tuple[float, ...], std: tuple[float, ...], scale: float) -> Any:
    """(B, 3, H, W) float pixel values → (x · scale − mean) / std per channel, on ``x``'s device."""
    import torch

    mean_t = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x * scale - mean_t) / std_t
