#!/usr/bin/env python3
"""Per family and backend on this CPU: model ms and pipeline end-to-end ms at 640x480, median after warm-up.

Real-size architectures built from configs with random weights (timing does not depend on the weights):
Depth Anything V2 Small (DINOv2-S/14 + DPT head, ~25 M parameters) at the released long side 518, on torch
fp32 / bf16 and, exported by `depth-node export`, on ONNX Runtime; plus the real FastDepth weights on LiteRT.
"model" = the forward pass (estimator.infer); "pipeline" = DepthPipeline.process on a 640x480 image:
preprocess → model → metric → confidence → organized xyz+rgb cloud.

    .venv/bin/python benchmarks/bench_models.py [--repeat 10] [--long-side 518]
    .venv/bin/python benchmarks/bench_models.py --diffusion     # only the SD2-size diffusion rows (minutes on a CPU)
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent


def da_small(folder: Path, long_side: int) -> Path:
    """Depth Anything V2 Small's architecture (as the released config) with random weights, and its card."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                            out_indices=[3, 6, 9, 12], reshape_hidden_states=False, image_size=518, patch_size=14)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384, neck_hidden_sizes=[48, 96, 192, 384],
                                 fusion_hidden_size=64, head_hidden_size=32, patch_size=14, depth_estimation_type="relative")
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(str(folder / "da_small"))
    card = yaml.safe_load((REPO / "models" / "depth_anything_v2_small.yaml").read_text())
    card.update(weights="da_small", name="da_v2_small_random")
    card["input"]["long_side"] = long_side
    path = folder / "da_small.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


def sd2_single_step(folder: Path, long_side: int, tiny: bool) -> Path:
    """E2E-FT's architecture at real size (SD2 UNet with 8 input channels, SD2 VAE; optionally a TAESD-size tiny
    decoder) with random weights, a 1024-d empty-prompt context, and its card."""
    import json

    import torch
    from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = folder / ("sd2_tiny" if tiny else "sd2")
    UNet2DConditionModel(in_channels=8, out_channels=4, block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=1024,
                         attention_head_dim=(5, 10, 20, 20), use_linear_projection=True).save_pretrained(str(root / "unet"))
    AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2).save_pretrained(str(root / "vae"))
    if tiny:
        AutoencoderTiny().save_pretrained(str(root / "vae_tiny"))
    DDIMScheduler(prediction_type="v_prediction", timestep_spacing="trailing", beta_schedule="scaled_linear").save_pretrained(str(root / "scheduler"))
    (root / "tok").mkdir(exist_ok=True)
    (root / "tok" / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1}))
    (root / "tok" / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(root / "tok" / "vocab.json"), str(root / "tok" / "merges.txt"), model_max_length=77).save_pretrained(str(root / "tokenizer"))
    CLIPTextModel(CLIPTextConfig(vocab_size=2, hidden_size=1024, intermediate_size=64, num_hidden_layers=1, num_attention_heads=8,
                                 bos_token_id=0, eos_token_id=1, pad_token_id=1)).save_pretrained(str(root / "text_encoder"))
    card = yaml.safe_load((REPO / "models" / "e2e_ft_depth.yaml").read_text())
    card.update(weights=root.name, name=f"e2e_ft_random{'_tiny_vae' if tiny else ''}")
    card["diffusion"]["decoder"] = "tiny" if tiny else "full"
    card["input"]["long_side"] = long_side
    path = folder / f"{root.name}.yaml"
    path.write_text(yaml.safe_dump(card))
    torch.manual_seed(0)
    return path


def median_ms(fn, repeat: int, warmup: int = 2) -> float:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--long-side", type=int, default=518)
    parser.add_argument("--diffusion", action="store_true", help="also SD2-size single-step diffusion at 768 (slow on CPU)")
    parser.add_argument("--diffusion-repeat", type=int, default=2)
    args = parser.parse_args()

    import torch

    from depth_node.core.camera import PinholeCamera
    from depth_node.core.pipeline import DepthPipeline, PipelineConfig
    from depth_node.estimators import load_estimator

    folder = Path(tempfile.mkdtemp())
    card = da_small(folder, args.long_side)
    if not args.diffusion:
        subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "export", str(card), "-o", str(folder / "da_small.onnx")],
                       check=True, stdout=subprocess.DEVNULL)
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    camera = PinholeCamera.from_hfov(640, 480, 70.0)
    fixed = PipelineConfig(scale_mode="fixed")
    runs = [
        ("Depth Anything V2 Small", "torch fp32", lambda: load_estimator(card), fixed),
        ("Depth Anything V2 Small", "torch bf16", lambda: load_estimator(card, precision="bf16"), fixed),
        ("Depth Anything V2 Small", "onnxruntime fp32", lambda: load_estimator(folder / "da_small.yaml"), fixed),
    ]
    fastdepth = REPO.parent / "shared" / "models" / "fastdepth" / "fast_depth_224.tflite"
    if fastdepth.is_file():
        runs.append(("FastDepth (real weights)", "tflite int8", lambda: load_estimator(REPO / "models" / "fastdepth.yaml"), PipelineConfig()))
    if args.diffusion:  # only the diffusion rows: they take minutes each on a CPU
        runs = []
        for tiny in (False, True):
            diffusion_card = sd2_single_step(folder, 768, tiny)
            runs.append(("E2E-FT-size single-step (SD2 UNet + " + ("tiny decoder)" if tiny else "VAE)"), "torch fp32",
                         lambda c=diffusion_card: load_estimator(c), fixed, args.diffusion_repeat))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print("| model | backend | model input | model ms | pipeline ms (640x480, all stages) |")
    print("|---|---|---|---|---|")
    for name, backend, make, config, *repeat in runs:
        repeat = repeat[0] if repeat else args.repeat
        estimator = make()
        x = estimator.preprocess(rgb)
        h, w = (x.shape[1], x.shape[2]) if x.shape[-1] == 3 else (x.shape[-2], x.shape[-1])  # NHWC or NCHW
        shape = f"{w}x{h}"
        warmup = 1 if repeat < args.repeat else 2
        model_ms = median_ms(lambda: estimator.infer(x), repeat, warmup)
        pipeline = DepthPipeline(estimator, config)
        pipeline_ms = median_ms(lambda: pipeline.process(rgb, camera), repeat, warmup)
        print(f"| {name} | {backend} | {shape} | {model_ms:.1f} | {pipeline_ms:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
