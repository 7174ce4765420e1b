#!/usr/bin/env python3
"""Per family and backend on this CPU: model ms and pipeline end-to-end ms at 640x480, median after warm-up.

Real-size architectures built from configs with random weights (timing does not depend on the weights), each at
its family's default resolution (the card's long side): Depth Anything V2 Small / Base / Large (DINOv2 + DPT head)
at 518 on torch fp32 (Small also bf16 and, exported by `depth-node export`, ONNX Runtime); the real FastDepth
weights on LiteRT; and the SD2-size latent-diffusion families at 768 (E2E-FT with the full VAE and with the tiny
decoder, Lotus-D, DepthMaster, Marigold with 1 and 4 DDIM steps).
"model" = the forward pass (estimator.infer); "pipeline" = DepthPipeline.process on a 640x480 image:
preprocess → model → metric → confidence → organized xyz+rgb cloud.

    .venv/bin/python benchmarks/bench_models.py [--repeat 10] [--models da_s,da_s_bf16,da_s_onnx,fastdepth]
    .venv/bin/python benchmarks/bench_models.py --models e2e_ft,e2e_ft_tiny,lotus_d,depthmaster,marigold_1,marigold_4 --repeat 1 --warmup 0
    .venv/bin/python benchmarks/bench_models.py --models da_s --save-cards /tmp/cards   # keep models + cards for bench_overhead.py --card
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

# Depth Anything V2 sizes as released (DINOv2 backbone; DPT neck and fusion widths), and a tiny one for rehearsals
DA_SIZES = {
    "small": dict(hidden=384, layers=12, heads=6, out_indices=[3, 6, 9, 12], neck=[48, 96, 192, 384], fusion=64),
    "base": dict(hidden=768, layers=12, heads=12, out_indices=[3, 6, 9, 12], neck=[96, 192, 384, 768], fusion=128),
    "large": dict(hidden=1024, layers=24, heads=16, out_indices=[5, 12, 18, 24], neck=[256, 512, 1024, 1024], fusion=256),
    "tiny": dict(hidden=32, layers=4, heads=2, out_indices=[1, 2, 3, 4], neck=[8, 16, 32, 32], fusion=16),
}


def depth_anything(folder: Path, size: str, long_side: int | None = None) -> Path:
    """Depth Anything V2 at a released size (or ``tiny``) with random weights, and its card (the shipped card of
    that size, Small's for tiny, weights swapped)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    s = DA_SIZES[size]
    backbone = Dinov2Config(hidden_size=s["hidden"], num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                            intermediate_size=4 * s["hidden"], out_indices=s["out_indices"], reshape_hidden_states=False,
                            image_size=518, patch_size=14)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=s["hidden"], neck_hidden_sizes=s["neck"],
                                 fusion_hidden_size=s["fusion"], head_hidden_size=32, patch_size=14, depth_estimation_type="relative")
    DepthAnythingForDepthEstimation(config).eval().save_pretrained(str(folder / f"da_{size}"))
    shipped = "small" if size == "tiny" else size
    card = yaml.safe_load((REPO / "models" / f"depth_anything_v2_{shipped}.yaml").read_text())
    card.update(weights=f"da_{size}", name=f"da_v2_{size}_random")
    if long_side:
        card["input"]["long_side"] = long_side
    path = folder / f"da_{size}.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


SHIPPED_DIFFUSION_CARD = {"e2e_ft": "e2e_ft_depth", "lotus_d": "lotus_d_depth", "depthmaster": "depthmaster",
                          "marigold": "marigold_depth_v1_1"}


# Latent-diffusion sizes: Stable Diffusion 2's UNet, VAE and text width, TAESD as the tiny decoder; and a tiny
# set for rehearsals (same layout, a few thousand parameters)
SD_SIZES = {
    "sd2": dict(unet=dict(block_out_channels=(320, 640, 1280, 1280), attention_head_dim=(5, 10, 20, 20)),
                vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2), taesd={}, text=1024),
    "tiny": dict(unet=dict(block_out_channels=(16, 32), attention_head_dim=2, layers_per_block=1, norm_num_groups=8,
                           down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")),
                 vae=dict(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4),
                 taesd=dict(encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4, num_encoder_blocks=(1,) * 4,
                            num_decoder_blocks=(1,) * 4), text=16),
}


def sd2_diffusion(folder: Path, variant: str, tiny: bool = False, steps: int = 1, long_side: int | None = None,
                  size: str = "sd2") -> Path:
    """A diffusion family at SD2 size (SD2 UNet, 8 input channels where the family feeds a noise latent beside the
    image latent, Lotus's task-embedding projection; SD2 VAE or a TAESD-size tiny decoder) with random weights,
    a 1024-d empty-prompt context, and its card (the shipped card, weights swapped). ``size="tiny"``: the same
    layout at the tiny widths of ``SD_SIZES``."""
    import json

    from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    dims = SD_SIZES[size]
    card = yaml.safe_load((REPO / "models" / f"{SHIPPED_DIFFUSION_CARD[variant]}.yaml").read_text())
    root = folder / f"{size}_{variant}{'_tiny' if tiny else ''}"
    lotus = variant == "lotus_d"
    UNet2DConditionModel(in_channels=8 if variant in ("e2e_ft", "marigold") else 4, out_channels=4, cross_attention_dim=dims["text"],
                         use_linear_projection=True, class_embed_type="projection" if lotus else None,
                         projection_class_embeddings_input_dim=4 if lotus else None, **dims["unet"]).save_pretrained(str(root / "unet"))
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4,
                  **dims["vae"]).save_pretrained(str(root / "vae"))
    if tiny:
        AutoencoderTiny(**dims["taesd"]).save_pretrained(str(root / "vae_tiny"))
    prediction = card["diffusion"].get("prediction", "v_prediction")
    DDIMScheduler(prediction_type=prediction, timestep_spacing="trailing", beta_schedule="scaled_linear",
                  clip_sample=False, set_alpha_to_one=False).save_pretrained(str(root / "scheduler"))
    (root / "tok").mkdir(exist_ok=True)
    (root / "tok" / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1}))
    (root / "tok" / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(root / "tok" / "vocab.json"), str(root / "tok" / "merges.txt"), model_max_length=77).save_pretrained(str(root / "tokenizer"))
    CLIPTextModel(CLIPTextConfig(vocab_size=2, hidden_size=dims["text"], intermediate_size=64, num_hidden_layers=1, num_attention_heads=8,
                                 bos_token_id=0, eos_token_id=1, pad_token_id=1)).save_pretrained(str(root / "text_encoder"))
    card.update(weights=root.name, name=f"{variant}_random{'_tiny_vae' if tiny else ''}")
    card["diffusion"]["decoder"] = "tiny" if tiny else "full"
    if variant == "marigold":
        card["diffusion"]["steps"] = steps
    if long_side:
        card["input"]["long_side"] = long_side
    path = folder / f"{root.name}_{steps}.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


def median_ms(fn, repeat: int, warmup: int) -> float:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def export_onnx(card: Path, onnx: Path) -> Path:
    """The card exported by `depth-node export` (which writes a sibling card pointing at the .onnx file)."""
    subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "export", str(card), "-o", str(onnx)], check=True,
                   stdout=subprocess.DEVNULL)
    return onnx.with_suffix(".yaml")


def runs(folder: Path, fastdepth: Path):  # noqa: ANN201
    """row name -> (model label, backend label, build the card, load_estimator options)."""
    return {
        "da_s": ("Depth Anything V2 Small", "torch fp32", lambda: depth_anything(folder, "small"), {}),
        "da_s_bf16": ("Depth Anything V2 Small", "torch bf16", lambda: depth_anything(folder, "small"), {"precision": "bf16"}),
        "da_s_onnx": ("Depth Anything V2 Small", "onnxruntime fp32",
                      lambda: export_onnx(depth_anything(folder, "small"), folder / "da_small_onnx.onnx"), {}),
        "da_b": ("Depth Anything V2 Base", "torch fp32", lambda: depth_anything(folder, "base"), {}),
        "da_l": ("Depth Anything V2 Large", "torch fp32", lambda: depth_anything(folder, "large"), {}),
        "fastdepth": ("FastDepth (real weights)", "tflite int8", lambda: fastdepth, {}),
        "e2e_ft": ("E2E-FT (SD2 UNet + VAE)", "torch fp32", lambda: sd2_diffusion(folder, "e2e_ft"), {}),
        "e2e_ft_tiny": ("E2E-FT (SD2 UNet + tiny decoder)", "torch fp32", lambda: sd2_diffusion(folder, "e2e_ft", tiny=True), {}),
        "lotus_d": ("Lotus-D (SD2 UNet + VAE)", "torch fp32", lambda: sd2_diffusion(folder, "lotus_d"), {}),
        "depthmaster": ("DepthMaster (SD2 UNet + VAE)", "torch fp32", lambda: sd2_diffusion(folder, "depthmaster"), {}),
        "marigold_1": ("Marigold v1.1, 1 DDIM step", "torch fp32", lambda: sd2_diffusion(folder, "marigold", steps=1), {}),
        "marigold_4": ("Marigold v1.1, 4 DDIM steps", "torch fp32", lambda: sd2_diffusion(folder, "marigold", steps=4), {}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="da_s,da_s_bf16,da_s_onnx,fastdepth",
                        help="comma-separated rows to run (default: %(default)s); 'list' prints the choices")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per figure (median; default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before timing (default 2)")
    parser.add_argument("--save-cards", type=Path, help="build the models and cards here and keep them (for bench_overhead.py --card)")
    args = parser.parse_args()

    import torch

    from depth_node.core.camera import PinholeCamera
    from depth_node.core.pipeline import DepthPipeline, PipelineConfig
    from depth_node.estimators import load_estimator
    from depth_node.estimators.card import load_card

    folder = args.save_cards or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    table = runs(folder, REPO / "models" / "fastdepth.yaml")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if names == ["list"] or not set(names) <= set(table):
        print("rows: " + ", ".join(table), file=sys.stderr)
        return 0 if names == ["list"] else 2
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    camera = PinholeCamera.from_hfov(640, 480, 70.0)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print("| model | backend | model input | model ms | pipeline ms (640x480, all stages) |")
    print("|---|---|---|---|---|")
    for name in names:
        label, backend, build, options = table[name]
        card = build()
        estimator = load_estimator(card, **options)
        # metric families use their own scale; relative ones a fixed scale (no metric source on random input)
        metric = load_card(card).output.invariance.value == "metric"
        pipeline = DepthPipeline(estimator, PipelineConfig() if metric else PipelineConfig(scale_mode="fixed"))
        x = estimator.preprocess(rgb)
        h, w = (x.shape[1], x.shape[2]) if x.shape[-1] == 3 else (x.shape[-2], x.shape[-1])  # NHWC or NCHW
        model_ms = median_ms(lambda: estimator.infer(x), args.repeat, args.warmup)
        pipeline_ms = median_ms(lambda: pipeline.process(rgb, camera), args.repeat, args.warmup)
        print(f"| {label} | {backend} | {w}x{h} | {model_ms:.1f} | {pipeline_ms:.1f} |", flush=True)
        if args.save_cards:
            print(f"  card kept: {card}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
