"""``depth-node train-confidence``: teach a confidence head where a trained depth model goes wrong.

Reads a model card written by ``depth-node train`` (its ``training`` section says how to rebuild the network; its
weights are the ``.safetensors`` beside the ONNX file), freezes that network and trains a
:class:`~depth_node.train.confidence_head.ConfidenceHead` on its errors. Writes into ``out``: ``model.onnx``
(depth, the input model's within 1e-4 relative — checked — + confidence), ``card.yaml`` (the input card with
``output.confidence_index: 1`` and the recipe), ``confidence_head.safetensors``, ``confidence_log.csv``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from depth_node.train.data import Samples, augment, real_rgbd, synthetic
from depth_node.train.half_weights import round_to_float16, store_initializers_as_float16
from depth_node.train.trainer import VALIDATION_SEED_OFFSET, load_depth_network

# the depth training renders with its seed and seed + VALIDATION_SEED_OFFSET; the head's scenes come from elsewhere,
# so the depth network's errors on them are the errors of scenes it has never seen
SYNTHETIC_SEED_OFFSET = 7_000_001


def scene_seeds(seed: int) -> tuple[int, int]:
    """(training, validation) seeds of the head's rendered scenes for a run of ``seed``; the validation scenes a
    further offset away (with + 1, seed k's validation scenes were seed k + 1's training scenes)."""
    return seed + SYNTHETIC_SEED_OFFSET, seed + SYNTHETIC_SEED_OFFSET + VALIDATION_SEED_OFFSET


SOURCE_WEIGHTS = {"real": 0.4, "synthetic": 0.6}
HEAD_SENTENCE = "Confidence (second output):"


@dataclass
class ConfidenceTrainConfig:
    out: Path
    model_card: Path
    train_dir: Path
    steps: int = 1200
    batch: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    synthetic: int = 800
    validation_synthetic: int = 40
    relight: float = 0.5
    target: str = "affine"       # the error the head learns: metric | scale | affine (confidence_head.aligned_log_residual)
    seed: int = 0
    threads: int = 0
    limit_real: int = 0
    log_every: int = 100


@dataclass
class ConfidenceTrainResult:
    out: Path
    log: list[dict[str, float]] = field(default_factory=list)
    initial: dict[str, float] = field(default_factory=dict)
    depth_max_rel_diff: float = math.nan     # exported depth vs the input model's ONNX
    seconds: float = 0.0


def validate(depth_model: Any, head: Any, sets: dict[str, Samples], target: str = "affine") -> dict[str, float]:
    """Per set: Laplace NLL of the ``target`` residual, and for each target's error (AbsRel of the prediction as
    published, scale-aligned and scale+shift-aligned) the AUSE of the head's ranking and of a random order, means
    over frames."""
    import torch

    from depth_node.train.confidence_head import TARGETS, aligned_log_residual, laplace_nll, ranking_ause
    from depth_node.train.trainer import to_tensor

    head.eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, samples in sets.items():
            if not len(samples):
                continue
            nll: list[float] = []
            ours: dict[str, list[float]] = {t: [] for t in TARGETS}
            random: dict[str, list[float]] = {t: [] for t in TARGETS}
            for i in range(0, len(samples), 8):
                x = to_tensor(samples.rgb[i:i + 8])
                log_depth = torch.log(depth_model(x))
                labels = torch.from_numpy(samples.depth[i:i + 8])
                log_error = head(x, log_depth)
                nll.append(float(laplace_nll(log_error, aligned_log_residual(log_depth, labels, target))))
                for judged in TARGETS:
                    for r, b in zip(aligned_log_residual(log_depth, labels, judged).numpy(), log_error[:, 0].numpy()):
                        labelled = np.isfinite(r)
                        if labelled.sum() > 100:
                            a, z = ranking_ause(np.abs(np.expm1(r[labelled])), -b[labelled])
                            ours[judged].append(a)
                            random[judged].append(z)
            out[f"{name}_nll"] = float(np.mean(nll))
            for judged in TARGETS:
                out[f"{name}_ause_{judged}"] = float(np.mean(ours[judged]))
                out[f"{name}_ause_{judged}_random"] = float(np.mean(random[judged]))
    head.train()
    return out


def build_data(cfg: ConfidenceTrainConfig, width: int, height: int,
               say: Callable[[str], None] = print) -> tuple[dict[str, Samples], dict[str, Samples]]:
    """Training labels (real RGB-D training frames, fresh rendered scenes) and validation sets (the real frames the
    depth training held out, rendered scenes of another seed). Never ``rgbd_dev``."""
    from depth_node.tools.progress import ProgressBar

    say(f"loading real RGB-D frames from {cfg.train_dir} …")
    real = real_rgbd(cfg.train_dir, width, height, limit=cfg.limit_real)
    train_seed, validation_seed = scene_seeds(cfg.seed)
    synth = synthetic(cfg.synthetic, width, height, train_seed, ProgressBar("rendering synthetic scenes"))
    validation = {name: real_rgbd(cfg.train_dir, width, height, validation=name) for name in ("real", "real_new_scene")}
    validation["synthetic"] = synthetic(cfg.validation_synthetic, width, height, validation_seed)
    say(f"training samples: {len(real)} real RGB-D, {len(synth)} synthetic; validation: "
        + ", ".join(f"{len(v)} {k}" for k, v in validation.items()))
    return {"real": real, "synthetic": synth}, validation


def train_confidence(cfg: ConfidenceTrainConfig, say: Callable[[str], None] = print,
                     data: tuple[dict[str, Samples], dict[str, Samples]] | None = None) -> ConfidenceTrainResult:
    import torch

    from depth_node.tools.progress import ProgressBar
    from depth_node.train.confidence_head import ConfidenceHead, aligned_log_residual, laplace_nll
    from depth_node.train.trainer import source_pools, start_run, to_tensor, warmup_cosine, write_log

    cfg.out, rng = start_run(cfg.out, cfg.seed, cfg.threads)
    depth_model, card = load_depth_network(cfg.model_card)
    width, height = int(card["training"].get("width", 256)), int(card["training"].get("height", 192))
    sources, validation = data or build_data(cfg, width, height, say)
    names, pools, weights = source_pools(sources, SOURCE_WEIGHTS)
    head = ConfidenceHead().train()
    say(f"confidence head: {sum(p.numel() for p in head.parameters()):,} parameters beside the frozen "
        f"{card.get('name', 'model')}; {cfg.steps} steps of {cfg.batch} at {width}x{height}")
    result = ConfidenceTrainResult(cfg.out)
    if validation:
        result.initial = validate(depth_model, head, validation, cfg.target)
        say("  before training: " + ", ".join(f"{k} {v:.4g}" for k, v in result.initial.items()))
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = warmup_cosine(optimizer, cfg.steps)
    start = time.perf_counter()
    progress = ProgressBar("training the confidence head")
    running: list[float] = []
    for step in range(1, cfg.steps + 1):
        picks = rng.choice(len(names), size=cfg.batch, p=weights)
        rows = [(pools[names[p]], int(rng.integers(len(pools[names[p]])))) for p in picks]
        rgb_b, depth_b = augment(np.stack([pool.rgb[i] for pool, i in rows]), np.stack([pool.depth[i] for pool, i in rows]),
                                 np.array([pool.kind[i] for pool, i in rows], np.int8), rng, relight_p=cfg.relight)
        x = to_tensor(rgb_b)
        with torch.no_grad():
            log_depth = torch.log(depth_model(x))
        loss = laplace_nll(head(x, log_depth), aligned_log_residual(log_depth, torch.from_numpy(depth_b), cfg.target))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(float(loss.detach()))
        progress(step, cfg.steps)
        if step % cfg.log_every == 0 or step == cfg.steps:
            entry = {"step": step, "loss": float(np.mean(running)), "lr": float(schedule.get_last_lr()[0]),
                     "seconds": time.perf_counter() - start, **validate(depth_model, head, validation, cfg.target)}
            running = []
            result.log.append(entry)
            write_log(cfg.out / "confidence_log.csv", result.log)
            say("  " + ", ".join(f"{k} {v:.4g}" for k, v in entry.items()))
    result.seconds = time.perf_counter() - start
    _save(depth_model, head.eval(), card, cfg, result, height, width)
    return result


def _save(depth_model: Any, head: Any, card: dict[str, Any], cfg: ConfidenceTrainConfig, result: ConfidenceTrainResult,
          height: int, width: int) -> None:
    from safetensors.torch import save_file

    from depth_node.train.confidence_head import REFERENCE_ERROR, DepthWithConfidence

    half = card["training"].get("store") == "float16"  # stored as the depth model was
    if half:
        round_to_float16(head)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(cfg.out / "confidence_head.safetensors"))
    source_onnx = (Path(cfg.model_card).parent / card["weights"]).resolve()
    result.depth_max_rel_diff = export_with_confidence(DepthWithConfidence(depth_model, head), cfg.out / "model.onnx",
                                                       height, width, source_onnx, half=half)
    out_card = dict(card)
    out_card["weights"] = "model.onnx"
    judged = {"metric": "of the depth as published", "scale": "after a per-image scale",
              "affine": "after a per-image least-squares scale and shift"}[cfg.target]
    # a card that already has a head (the shipped default) is retrained: its head's sentence and numbers go
    description = str(card.get("description", "")).split(HEAD_SENTENCE)[0].rstrip()
    if "measured" in card:
        out_card["measured"] = {k: v for k, v in card["measured"].items() if k != "confidence_head_ause"}
    out_card["description"] = (description + (
        f" {HEAD_SENTENCE} a learnt head (`depth-node train-confidence`) predicts each pixel's expected "
        f"relative depth error b {judged}; confidence = 1 / (1 + (b / {REFERENCE_ERROR})^2)."))
    out_card["output"] = {**card.get("output", {}), "confidence_index": 1}
    out_card["confidence_training"] = {
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "out"},
        "seconds": round(result.seconds, 1), "initial": result.initial, "final": result.log[-1] if result.log else {}}
    (cfg.out / "card.yaml").write_text(yaml.safe_dump(out_card, sort_keys=False, width=110))


def export_with_confidence(model: Any, path: Path, height: int, width: int, source_onnx: Path | None = None,
                           half: bool = False) -> float:
    """ONNX (opset 17; dynamic batch, height, width) with outputs ``depth`` and ``confidence``, checked against torch
    (to 1e-4; 1e-2 with ``half``: float16 initializers, see trainer.export_onnx); with ``source_onnx``, the depth output also
    against that file (to 1e-4: the depth must not change). Returns the largest relative depth difference; raises when
    any check fails."""
    import onnxruntime
    import torch

    model.eval()  # the exporter restores the mode it found: in train mode batch norm would use batch statistics
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, torch.zeros(1, 3, height, width), str(path), dynamo=False, input_names=["image"],
                          output_names=["depth", "confidence"], dynamic_axes={"image": axes, "depth": axes, "confidence": axes},
                          opset_version=17)
    if half:
        store_initializers_as_float16(path)
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(1)).numpy()
    depth, confidence = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})
    with torch.no_grad():
        expected_depth, expected_confidence = (t.numpy() for t in model(torch.from_numpy(x)))
    difference = float(np.max(np.abs(depth - expected_depth) / np.abs(expected_depth)))
    confidence_difference = float(np.max(np.abs(confidence - expected_confidence)))
    allowed = 1e-2 if half else 1e-4
    if difference > allowed or confidence_difference > allowed:
        raise RuntimeError(f"ONNX export differs from torch: depth by {difference:.2e} (relative), confidence by {confidence_difference:.2e}")
    if source_onnx is not None:
        original = onnxruntime.InferenceSession(str(source_onnx), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
        changed = float(np.max(np.abs(depth - original) / np.abs(original)))
        if changed > 1e-4:
            raise RuntimeError(f"the depth output differs from {source_onnx} by {changed:.2e} (relative): it must not change")
        difference = max(difference, changed)
    return difference
