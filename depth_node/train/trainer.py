"""``depth-node train``: fine-tune a card's network on real RGB-D frames, reproducibly from a seed.

Start (``init``): a TFLite card, its network imported as float, or a card with a ``network:`` block (the shipped
default, an earlier run). Data: the ``rgbd`` split of an index folder (:mod:`depth_node.train.data`) at the start
card's own input geometry; the sources in ``VALIDATION_SOURCES`` are held out and validated every ``log_every``
steps, as published (metres) and scale+shift aligned. Loss: SILog (λ 0.85) + 0.5 × multi-scale log-gradient
(:mod:`depth_node.train.losses`); AdamW, 5 % warm-up then cosine decay.

Writes into ``out``: ``model.safetensors`` (torch weights), ``model.onnx`` (any batch, height and width; checked
against torch), ``card.yaml`` (input and output as the start card's, a ``network:`` block naming the TFLite card and
the weights, and the recipe with the first and last validation), ``train_log.csv`` and ``loss.png``.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import yaml

from depth_node.backends.onnx_export import export_onnx
from depth_node.backends.torch_backend import normalize
from depth_node.estimators.card import load_card
from depth_node.eval.metrics import EvalRange, score_frame
from depth_node.paths import resolve_card
from depth_node.progress import ProgressBar
from depth_node.train.data import VALIDATION_SOURCES, Samples, augment, real_rgbd


@dataclass
class TrainConfig:
    out: Path
    train_dir: Path
    init: str = "default"        # the card whose network is fine-tuned (a path, or a name in models/)
    freeze_encoder: bool = False  # train the decoder only (keeps what a pretrained encoder learnt)
    steps: int = 1000
    batch: int = 8
    lr: float = 3e-4
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 0
    limit: int = 0               # 0 = every training frame (smoke tests use a few)
    log_every: int = 100

    def check(self) -> None:
        """Raise ValueError for options out of range (before any data is loaded)."""
        if self.steps <= 0 or self.batch < 2:
            raise ValueError(f"steps must be positive and batch at least 2, got {self.steps} and {self.batch}")
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.weight_decay < 0:
            raise ValueError(f"lr must be positive and weight_decay ≥ 0, got {self.lr} and {self.weight_decay}")
        if self.log_every <= 0:
            raise ValueError(f"log_every must be positive, got {self.log_every}")


@dataclass
class TrainResult:
    out: Path
    log: list[dict[str, float]] = field(default_factory=list)
    initial: dict[str, float] = field(default_factory=dict)  # validation before the first step
    onnx_max_rel_diff: float = math.nan
    seconds: float = 0.0


def to_tensor(rgb: np.ndarray) -> Any:
    """uint8 (B, H, W, 3) → normalized float (B, 3, H, W), as the cards' input rules (``network.MEAN`` / ``STD``) do."""
    import torch

    from depth_node.train.network import MEAN, STD

    return normalize(torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float(), MEAN, STD, 1 / 255.0)


def load_data(cfg: TrainConfig, rules: Any, say: Callable[[str], None] = print) -> tuple[Samples, dict[str, Samples]]:
    """Training frames and validation sets (never ``rgbd_dev``), at the input size of ``rules``."""
    say(f"loading real RGB-D frames from {cfg.train_dir} …")
    frames = real_rgbd(cfg.train_dir, rules, limit=cfg.limit)
    validation = {name: real_rgbd(cfg.train_dir, rules, validation=name) for name in VALIDATION_SOURCES}
    say(f"training frames: {len(frames)}; validation: " + ", ".join(f"{len(v)} {k}" for k, v in validation.items()))
    return frames, validation


def validate(model: Any, sets: dict[str, Samples]) -> dict[str, float]:
    """Per validation set: AbsRel and δ1 as published (the network's metres) and scale+shift aligned."""
    import torch


    model.eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, samples in sets.items():
            if not len(samples):
                continue
            scores = []
            for i in range(0, len(samples), 8):
                pred = model(to_tensor(samples.rgb[i:i + 8]))[:, 0].numpy()
                scores += [score_frame(p, g, EvalRange(1e-3, 80.0), modes=("metric", "affine")) for p, g in zip(pred, samples.depth[i:i + 8])]
            out[f"{name}_abs_rel"] = float(np.nanmean([s.metrics["metric"]["abs_rel"] for s in scores]))
            out[f"{name}_delta1"] = float(np.nanmean([s.metrics["metric"]["delta1"] for s in scores]))
            out[f"{name}_aligned_abs_rel"] = float(np.nanmean([s.metrics["affine"]["abs_rel"] for s in scores]))
            out[f"{name}_aligned_delta1"] = float(np.nanmean([s.metrics["affine"]["delta1"] for s in scores]))
    model.train()
    return out


def warmup_cosine(optimizer: Any, steps: int) -> Any:
    """Linear warm-up over 5 % of the steps, then cosine decay to 1 % of the peak learning rate."""
    import torch

    warmup = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.01 + 0.99 * 0.5 * (
        1 + math.cos(math.pi * min(1.0, max(0, s - warmup) / max(1, steps - warmup))))))


def train(cfg: TrainConfig, say: Callable[[str], None] = print,
          data: tuple[Samples, dict[str, Samples]] | None = None) -> TrainResult:
    """Fine-tune ``cfg.init``'s network; ``data`` (training frames, validation sets) replaces loading them."""
    import torch

    from depth_node.train.losses import GRADIENT_WEIGHT, gradient_loss, silog_loss
    from depth_node.train.network import load_depth_network, parameter_count

    cfg.check()
    start_card = load_card(resolve_card(cfg.init))
    model, _ = load_depth_network(cfg.init)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    rng = np.random.default_rng(cfg.seed)
    frames, validation = data or load_data(cfg, start_card.input, say)
    if not len(frames):
        raise ValueError(f"no training frames: {cfg.train_dir}/index.csv has no rgbd rows outside the validation sources")
    model.requires_grad_(True).train()
    frozen = {id(p) for p in model.encoder_parameters()} if cfg.freeze_encoder else set()
    trainable = [p for p in model.parameters() if id(p) not in frozen]
    say(f"{start_card.name}: {parameter_count(model):,} parameters, {sum(p.numel() for p in trainable):,} trained; "
        f"{cfg.steps} steps of {cfg.batch} at {frames.rgb.shape[2]}x{frames.rgb.shape[1]}")
    result = TrainResult(out)
    result.initial = validate(model, validation)
    say("  before training: " + ", ".join(f"{k} {v:.4g}" for k, v in result.initial.items()))
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = warmup_cosine(optimizer, cfg.steps)
    started = time.perf_counter()
    progress = ProgressBar("training")
    running: list[float] = []
    for step in range(1, cfg.steps + 1):
        picks = rng.integers(len(frames), size=cfg.batch)
        rgb, depth = augment(frames.rgb[picks], frames.depth[picks], rng)
        log_pred, target = model.log_depth(to_tensor(rgb)), torch.from_numpy(depth)
        loss = silog_loss(log_pred, target) + GRADIENT_WEIGHT * gradient_loss(log_pred, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(float(loss.detach()))
        progress(step, cfg.steps)
        if step % cfg.log_every == 0 or step == cfg.steps:
            entry = {"step": step, "loss": float(np.mean(running)), "lr": float(schedule.get_last_lr()[0]),
                     "seconds": time.perf_counter() - started, **validate(model, validation)}
            running = []
            result.log.append(entry)
            write_log(out / "train_log.csv", result.log)
            say("  " + ", ".join(f"{k} {v:.4g}" for k, v in entry.items()))
    result.seconds = time.perf_counter() - started
    _save(model.eval(), cfg, start_card, frames.rgb.shape[1:3], result)
    return result


def write_log(path: Path, log: list[dict[str, float]]) -> None:
    """The logged entries as CSV (columns: every key any entry has, in first-seen order), rewritten whole."""
    keys = list(dict.fromkeys(k for entry in log for k in entry))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, keys)
        writer.writeheader()
        writer.writerows(log)


def _save(model: Any, cfg: TrainConfig, start_card: Any, size: tuple[int, int], result: TrainResult) -> None:
    """Weights, ONNX export (checked against torch), card, loss plot."""
    import torch
    from safetensors.torch import save_file

    from depth_node.train.network import card_reference, input_block, tflite_card_of

    out = Path(cfg.out)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    example = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    result.onnx_max_rel_diff = export_onnx(model, example, out / "model.onnx", dynamic=True, output_names=("depth",))
    recipe = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "out"}
    card = {
        "name": out.name,
        "family": "onnx",
        "description": (f"{start_card.name} fine-tuned by `depth-node train` on real RGB-D frames ({cfg.train_dir}): "
                        f"SILog + gradient loss, {cfg.steps} steps. Metric depth."),
        "license": f"{start_card.license}; fine-tuning data: see {cfg.train_dir}",
        "weights": "model.onnx",
        "input": input_block(model.graph.stride, start_card.input),
        "output": {"space": "depth", "invariance": "metric"},
        "network": {"tflite": card_reference(tflite_card_of(start_card.path)[0], out), "weights": "model.safetensors"},
        "training": {**recipe, "seconds": round(result.seconds, 1), "initial": result.initial,
                     "final": result.log[-1] if result.log else {}},
    }
    (out / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False, width=110))
    plot_losses(result.log, out / "loss.png")


def plot_losses(log: list[dict[str, float]], path: Path, width: int = 640, height: int = 320) -> None:
    """Training loss and the validation sets' AbsRel as published against step, as a small PNG."""
    if len(log) < 2:
        return
    canvas = np.full((height, width, 3), 255, np.uint8)
    steps = np.array([e["step"] for e in log], float)
    series = [("loss", (180, 119, 31))] + [(k, c) for k, c in (("real_abs_rel", (40, 39, 214)),
                                                              ("real_new_scene_abs_rel", (189, 103, 148))) if k in log[0]]
    top = max(max(e[k] for e in log if math.isfinite(e[k])) for k, _ in series)
    for n, (key, colour) in enumerate(series):
        ys = np.array([e[key] for e in log], float)
        pts = np.stack([40 + (steps - steps[0]) / max(steps[-1] - steps[0], 1) * (width - 60),
                        height - 30 - ys / top * (height - 60)], axis=1).astype(np.int32)
        cv2.polylines(canvas, [pts], False, colour, 2, cv2.LINE_AA)
        cv2.putText(canvas, key, (50, 20 + 16 * n), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (40, 30), (width - 20, height - 30), (160, 160, 160), 1)
    cv2.putText(canvas, f"step {int(steps[0])}..{int(steps[-1])}; top {top:.3g}", (width - 240, height - 10),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), canvas)
