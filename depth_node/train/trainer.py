"""``depth-node train``: the training loop of the embedded default model, reproducible from a seed.

Writes into ``out``: ``model.safetensors`` (torch weights), ``model.onnx`` (the shipped form, checked against
torch), ``card.yaml`` (a model card for the ONNX file, with the recipe), ``train_log.csv`` (loss and validation
per log step) and ``loss.png``.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import yaml

from depth_node.train.data import METRIC, VALIDATION_SOURCES, Samples, augment, real_rgbd, relight, synthetic, unlabeled
from depth_node.train.half_weights import STORES, round_to_float16, store_initializers_as_float16

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# share of each batch: the real RGB-D frames come from few scenes (TUM fr1_rpy is most of them), so they are not
# allowed to dominate; teacher labels bring the variety of real images, synthetic scenes exact geometry
SOURCE_WEIGHTS = {"real": 0.2, "teacher": 0.4, "synthetic": 0.4}
INITS = ("scratch", "teacher")  # or the card.yaml of an earlier run: a curriculum's next stage
# rendered validation scenes come from seed + this, training scenes from the seed itself
VALIDATION_SEED_OFFSET = 1_000_003


@dataclass
class TrainConfig:
    out: Path
    train_dir: Path
    teacher_card: str = "fastdepth"
    init: str = "scratch"        # "scratch": TinyDepthNet from random weights; "teacher": fine-tune the teacher's own network;
                                 # a card.yaml written by this trainer: go on from that run's network and weights
    freeze_encoder: bool = False  # train the decoder only (keeps what a pretrained encoder learnt)
    refiner: bool = False        # with init "teacher": add a correction branch that starts at zero (network.ResidualRefiner)
    refiner_branch: str = "tiny"  # with refiner: "tiny" (TinyDepthNet from random weights) or "teacher" (a copy of the network)
    freeze_base: bool = False    # with refiner or expert: train the branch or gate only (the networks stay as they are)
    expert: str = ""             # with init "teacher": the card.yaml of an earlier run whose network joins the teacher's,
                                 # blended per pixel by a gate (network.ExpertBlend)
    gate_scale: bool = False     # with expert: the gate also predicts a log-scale per image (network.ExpertBlend)
    gate: str = "pixel"          # with expert: blend per "pixel", or choose one network per "image" (network.GATES)
    expert_network: dict[str, Any] | None = None  # the expert's whole recipe (its card's training block), read from its card
    keep: float = 0.0            # weight of the keep loss (real samples stay close to the initial network's prediction)
    keep_clean: bool = False     # the keep targets from the photometrically clean view (flip, crop, CutMix only)
    relight: float = 0.0         # share of samples relit (data.relight): exposure, light pools, shadows
    ema: float = 0.0             # decay of an exponential moving average of the weights (0 = off); the average is validated and shipped
    steps: int = 3000
    batch: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 256
    height: int = 192
    synthetic: int = 600
    validation_synthetic: int = 40
    seed: int = 0
    threads: int = 0
    limit_real: int = 0          # 0 = all (smoke tests use a few)
    limit_unlabeled: int = 0
    log_every: int = 100
    store: str = "float32"       # dtype of the stored weights (half_weights.STORES); the network computes in float32
    mix: dict[str, float] = field(default_factory=lambda: dict(SOURCE_WEIGHTS))  # share of each source in a batch

    def check(self) -> None:
        """Raise ValueError for options that do not go together (before any data is loaded)."""
        if self.init not in INITS and not self.init.endswith((".yaml", ".yml")):
            raise ValueError(f"init must be one of {', '.join(INITS)} or the card.yaml of an earlier run, got {self.init!r}")
        if self.keep > 0 and self.init == "scratch":
            raise ValueError("--keep needs a pretrained start (--init teacher or a card): a random network has nothing to keep")
        if self.init not in INITS:
            if self.refiner:
                raise ValueError(f"--init {self.init} goes on with that run's network as it is (with its correction branch if "
                                 "it had one): leave out --refiner")
            earlier = network_recipe(read_card(Path(self.init))["training"])
            refiner, two_networks = bool(earlier.get("refiner", False)), bool(earlier.get("expert_network"))
        else:
            refiner, two_networks = self.refiner, False
        if self.refiner_branch not in ("tiny", "teacher"):
            raise ValueError(f"--refiner-branch is tiny or teacher, got {self.refiner_branch!r}")
        if self.refiner_branch != "tiny" and not self.refiner:
            raise ValueError("--refiner-branch chooses the branch that --refiner adds: give --refiner too (a card given to "
                             "--init brings its own)")
        if self.refiner and self.init == "scratch":
            raise ValueError("--refiner adds a branch to a pretrained network: use it with --init teacher")
        if self.store not in STORES:
            raise ValueError(f"--store is one of {', '.join(STORES)}, got {self.store!r}")
        if self.expert:
            if self.init != "teacher" or self.refiner:
                raise ValueError("--expert blends an earlier run's network with the teacher's: use it with --init teacher "
                                 "and without --refiner")
            if not Path(self.expert).is_file():
                raise ValueError(f"--expert {self.expert}: no such card; give the card.yaml that depth-node train wrote")
        from depth_node.train.network import GATES  # torch: only once a run is configured

        if self.gate not in GATES:
            raise ValueError(f"--gate is one of {', '.join(GATES)}, got {self.gate!r}")
        if self.gate != "pixel" and not self.expert:
            raise ValueError("--gate chooses how the gate of --expert blends: give --expert too")
        if self.gate_scale and not self.expert:
            raise ValueError("--gate-scale gives the gate of --expert a per-image scale: give --expert too")
        if self.freeze_base and not (refiner or two_networks or self.expert):
            raise ValueError("--freeze-base leaves only the correction branch or the gate to train: it needs --refiner or "
                             "--expert (or --init with the card of a run that had one)")


@dataclass
class TrainResult:
    out: Path
    log: list[dict[str, float]] = field(default_factory=list)
    initial: dict[str, float] = field(default_factory=dict)  # validation before the first step
    onnx_max_rel_diff: float = math.nan
    seconds: float = 0.0


def to_tensor(rgb: np.ndarray) -> Any:
    """uint8 (B, H, W, 3) → normalized float (B, 3, H, W) as the card's input rules do."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def teacher_from_card(card: str) -> Callable[[np.ndarray], np.ndarray]:
    """The teacher as a function: uint8 RGB → metres on its own output grid (≤ 0 → NaN)."""
    from depth_node.estimators import load_estimator
    from depth_node.paths import resolve_card

    estimator = load_estimator(resolve_card(card))

    def label(rgb: np.ndarray) -> np.ndarray:
        values = estimator.predict(rgb).values.astype(np.float32)
        values[~(values > 0)] = np.nan
        return values

    return label


def read_card(card_path: Path) -> dict[str, Any]:
    """A card written by ``depth-node train`` as a mapping, its ``training:`` recipe checked; ValueError for any other card."""
    try:
        card = yaml.safe_load(Path(card_path).read_text())
    except OSError as error:
        raise FileNotFoundError(f"{card_path}: {error.strerror}; give the card.yaml that depth-node train wrote") from None
    recipe = card.get("training") if isinstance(card, dict) else None
    if not isinstance(recipe, dict) or "init" not in recipe:
        raise ValueError(f"{card_path} has no 'training' section from depth-node train: only this project's own models "
                         "can be trained on (or get a confidence head)")
    return card


def recipe_chain(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """This run's recipe and the earlier stages' (each under the one after it as ``previous``), newest first."""
    chain = [recipe]
    while isinstance(chain[-1].get("previous"), dict):
        chain.append(chain[-1]["previous"])
    return chain


def network_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe that built the network's architecture: the first stage's (``init`` scratch or teacher)."""
    first = recipe_chain(recipe)[-1]
    if first.get("init") not in INITS:
        raise ValueError(f"training.init is {first.get('init')!r} but the card has no training.previous to rebuild it from")
    return first


def load_depth_network(card_path: Path) -> tuple[Any, dict[str, Any]]:
    """The torch network behind a card written by ``depth-node train`` (eval mode, no gradients), and the card's mapping."""
    from safetensors.torch import load_file

    card_path = Path(card_path)
    card = read_card(card_path)
    root = network_recipe(card["training"])
    weights = (card_path.parent / card["weights"]).with_suffix(".safetensors")
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: depth-node train writes the torch weights beside the ONNX file")
    network = architecture(root)
    state = load_file(str(weights))
    network.load_state_dict(state, strict=False)
    missing = set(network.state_dict()) - set(state)
    if any(not name.endswith(("in_scale", "in_shift")) for name in missing):
        raise ValueError(f"{weights} does not hold every weight of the network in {card_path}: missing {sorted(missing)[:5]}")
    return network.eval().requires_grad_(False), card


def architecture(recipe: dict[str, Any]) -> Any:
    """The network a first-stage recipe (``init`` scratch or teacher) builds, before training: TinyDepthNet from random
    weights, or the teacher's TFLite network imported as float, with the correction branch (``refiner``) or the expert
    and gate (``expert_network``: the expert's own recipe, whose first stage built it; its weights are not loaded here) it asked for."""
    from depth_node.train.network import ExpertBlend, ResidualRefiner, TeacherInitNet, TinyDepthNet

    if recipe["init"] == "scratch":
        return TinyDepthNet()
    from depth_node.estimators.card import load_card
    from depth_node.paths import resolve_card
    from depth_node.train.tflite_import import load_tflite_graph

    card = load_card(resolve_card(recipe.get("teacher_card", "fastdepth")))
    if card.weights.suffix != ".tflite":
        raise ValueError(f"--init teacher imports a TFLite teacher; {card.name} has weights {card.weights.name}")
    network = TeacherInitNet(load_tflite_graph(card.weights), MEAN, STD)
    if recipe.get("expert_network"):
        return ExpertBlend(network, architecture(network_recipe(recipe["expert_network"])), bool(recipe.get("gate_scale", False)),
                           recipe.get("gate", "pixel"))  # cards from before per-image gates blend per pixel
    return ResidualRefiner(network, recipe.get("refiner_branch", "tiny")) if recipe.get("refiner") else network


def build_student(cfg: TrainConfig) -> Any:
    """The network to train: :func:`architecture` of the config (with ``cfg.expert``: the expert's trained weights
    loaded from its card, and its recipe recorded in ``cfg.expert_network``), or an earlier run's network and weights."""
    cfg.check()
    if cfg.init not in INITS:
        return load_depth_network(Path(cfg.init))[0].requires_grad_(True).train()
    expert = None
    if cfg.expert:
        expert, expert_card = load_depth_network(Path(cfg.expert))
        cfg.expert_network = expert_card["training"]  # every stage of it: the card says how to reproduce the expert too
    network = architecture(asdict(cfg))
    if expert is not None:
        network.expert.load_state_dict(expert.state_dict())
    return network.requires_grad_(True).train()


def build_data(cfg: TrainConfig, say: Callable[[str], None] = print) -> tuple[dict[str, Samples], dict[str, Samples]]:
    """Training sources and validation sets (never ``rgbd_dev``)."""
    from depth_node.tools.progress import ProgressBar

    nothing = Samples.empty(cfg.width, cfg.height)  # for a source --mix leaves out: minutes of labelling or rendering saved
    real, teacher, synth = nothing, nothing, nothing
    if cfg.mix.get("real", 0) > 0:
        say(f"loading real RGB-D frames from {cfg.train_dir} …")
        real = real_rgbd(cfg.train_dir, cfg.width, cfg.height, limit=cfg.limit_real)
    if cfg.mix.get("teacher", 0) > 0:
        say(f"labelling unlabelled frames with the teacher ({cfg.teacher_card}) …")
        teacher = unlabeled(cfg.train_dir, cfg.width, cfg.height, teacher_from_card(cfg.teacher_card), limit=cfg.limit_unlabeled)
    if cfg.mix.get("synthetic", 0) > 0:
        synth = synthetic(cfg.synthetic, cfg.width, cfg.height, cfg.seed, ProgressBar("rendering synthetic scenes"))
    validation = {name: real_rgbd(cfg.train_dir, cfg.width, cfg.height, validation=name) for name in VALIDATION_SOURCES}
    validation["synthetic"] = synthetic(cfg.validation_synthetic, cfg.width, cfg.height, cfg.seed + VALIDATION_SEED_OFFSET)
    # the new scene under other light (fixed seed): a student reading brightness as depth loses here
    new_scene, light = validation["real_new_scene"], np.random.default_rng(1_000_033)
    validation["real_new_scene_relit"] = Samples(np.stack([relight(image, light) for image in new_scene.rgb]) if len(new_scene) else new_scene.rgb,
                                                 new_scene.depth, new_scene.kind, new_scene.names)
    say(f"training samples: {len(real)} real RGB-D, {len(teacher)} teacher-labelled, {len(synth)} synthetic; "
        "validation: " + ", ".join(f"{len(v)} {k}" for k, v in validation.items()))
    return {"real": real, "teacher": teacher, "synthetic": synth}, validation


def validate(model: Any, sets: dict[str, Samples]) -> dict[str, float]:
    """Mean AbsRel (as predicted, and scale+shift aligned in depth) and δ1 (aligned) per validation set."""
    import torch

    from depth_node.eval.metrics import EvalRange, score_frame

    model.eval()
    out: dict[str, float] = {}
    with torch.no_grad():
        for name, samples in sets.items():
            if not len(samples):
                continue
            scores = []
            for i in range(0, len(samples), 8):
                pred = model(to_tensor(samples.rgb[i:i + 8]))[:, 0].numpy()
                for p, g in zip(pred, samples.depth[i:i + 8]):
                    scores.append(score_frame(p, g, EvalRange(1e-3, 80.0), modes=("metric", "affine")))
            for mode in ("metric", "affine"):
                out[f"{name}_{mode}_abs_rel"] = float(np.nanmean([s.metrics[mode]["abs_rel"] for s in scores]))
            out[f"{name}_affine_delta1"] = float(np.nanmean([s.metrics["affine"]["delta1"] for s in scores]))
    model.train()
    return out


def keep_anchor(model: Any) -> Any:
    """What the keep loss holds real samples to: a frozen copy of the network training starts from.

    Learning without forgetting (Li & Hoiem 2016): the copy labels every real sample of the batch as the student sees
    it, and a scale-invariant loss keeps the student close to it, so what the pretrained network knows of rooms outside
    the training set survives fine-tuning on a few of them. With a correction branch the copy is of the base network
    alone (the part that learnt real rooms; with an expert beside it: the gate learns to keep real images as the base
    sees them): at a first stage that is the initial network, as the branch starts at zero;
    at a later stage it asks the branch to leave real images as the base sees them.
    """
    from depth_node.train.network import ExpertBlend, ResidualRefiner

    return copy.deepcopy(model.base if isinstance(model, (ResidualRefiner, ExpertBlend)) else model).eval().requires_grad_(False)


def start_run(out: Path, seed: int, threads: int) -> tuple[Path, np.random.Generator]:
    """Create ``out``, seed torch, set its CPU threads (0 = all cores); the run's numpy generator."""
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    return out, np.random.default_rng(seed)


def source_pools(sources: dict[str, Samples], shares: dict[str, float]) -> tuple[list[str], dict[str, Samples], np.ndarray]:
    """The non-empty sources with a share > 0, their names in order and the probability of drawing each (``shares``
    normalized over them)."""
    pools = {k: v for k, v in sources.items() if len(v) and shares.get(k, 0) > 0}
    if not pools:
        empty = [k for k, v in sources.items() if not len(v)]
        raise ValueError(f"no training data: sources with a share > 0 are empty ({', '.join(empty) or 'none'}): check "
                         "--train-dir, --synthetic and --mix")
    weights = np.array([shares[k] for k in pools])
    return list(pools), pools, weights / weights.sum()


def warmup_cosine(optimizer: Any, steps: int) -> Any:
    """Linear warm-up over 5 % of the steps, then cosine decay to 1 % of the peak learning rate."""
    import torch

    warmup = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 0.01 + 0.99 * 0.5 * (
        1 + math.cos(math.pi * min(1.0, max(0, s - warmup) / max(1, steps - warmup))))))


def train(cfg: TrainConfig, say: Callable[[str], None] = print,
          data: tuple[dict[str, Samples], dict[str, Samples]] | None = None) -> TrainResult:
    import torch

    from depth_node.tools.progress import ProgressBar
    from depth_node.train.losses import GRADIENT_WEIGHT, LAMBDA_METRIC, LAMBDA_RELATIVE, gradient_loss, router_loss, silog_loss
    from depth_node.train.network import ExpertBlend, parameter_count

    cfg.check()
    cfg.out, rng = start_run(cfg.out, cfg.seed, cfg.threads)
    sources, validation = data or build_data(cfg, say)
    names, pools, weights = source_pools(sources, cfg.mix)
    model = build_student(cfg)
    say(f"{type(model).__name__}: {parameter_count(model):,} parameters; {cfg.steps} steps of {cfg.batch} at {cfg.width}x{cfg.height}")
    result = TrainResult(cfg.out)
    if validation:
        result.initial = validate(model, validation)
        say("  before training: " + ", ".join(f"{k} {v:.4g}" for k, v in result.initial.items()))
    anchor = keep_anchor(model) if cfg.keep > 0 else None
    frozen = model.fixed_parameters() if cfg.freeze_base else model.encoder_parameters() if cfg.freeze_encoder else []
    for parameter in frozen:
        parameter.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    say(f"training {sum(p.numel() for p in trainable):,} of {parameter_count(model):,} parameters")
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = warmup_cosine(optimizer, cfg.steps)
    # Polyak averaging: the weights of single steps wander (the unseen-scene validation moves by ±0.03 between
    # logged steps); their moving average is a flatter, steadier solution and costs one extra copy of the weights
    average = None
    if cfg.ema > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    shipped = model if average is None else average.module
    router = isinstance(model, ExpertBlend) and model.per_image
    start = time.perf_counter()
    progress = ProgressBar("training")
    running: list[float] = []
    for step in range(1, cfg.steps + 1):
        picks = rng.choice(len(names), size=cfg.batch, p=weights)
        rgb, depth, kind = [], [], []
        for p in picks:
            pool = pools[names[p]]
            i = int(rng.integers(len(pool)))
            rgb.append(pool.rgb[i])
            depth.append(pool.depth[i])
            kind.append(pool.kind[i])
        kind_arr = np.array(kind, np.int8)
        clean = np.empty((len(picks), *rgb[0].shape), np.uint8) if anchor is not None and cfg.keep_clean else None
        rgb_b, depth_b = augment(np.stack(rgb), np.stack(depth), kind_arr, rng, relight_p=cfg.relight, geometric=clean)
        lam = torch.tensor([LAMBDA_METRIC if k == METRIC else LAMBDA_RELATIVE for k in kind_arr])
        x = to_tensor(rgb_b)
        target = torch.from_numpy(depth_b)
        if router:  # the per-image gate also learns which network is better on each image (losses.router_loss)
            log_pred, base_log, expert_log, gate_logit = model.blend(x)
            loss = router_loss(gate_logit, base_log, expert_log, target, lam)
        else:
            log_pred, loss = model.log_depth(x), 0.0
        loss = loss + silog_loss(log_pred, target, lam) + GRADIENT_WEIGHT * gradient_loss(log_pred, target)
        real_rows = torch.from_numpy(np.array([names[p] != "synthetic" for p in picks]))
        if anchor is not None and bool(real_rows.any()):
            with torch.no_grad():  # the initial network's view: what the student sees, or its clean version
                kept = anchor(x[real_rows] if clean is None else to_tensor(clean[real_rows.numpy()]))[:, 0]
            kept_log = log_pred[real_rows]
            loss = loss + cfg.keep * (silog_loss(kept_log, kept, torch.ones(len(kept))) + GRADIENT_WEIGHT * gradient_loss(kept_log, kept))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if average is not None:
            average.update_parameters(model)
        running.append(float(loss.detach()))
        progress(step, cfg.steps)
        if step % cfg.log_every == 0 or step == cfg.steps:
            entry = {"step": step, "loss": float(np.mean(running)), "lr": float(schedule.get_last_lr()[0]),
                     "seconds": time.perf_counter() - start, **validate(shipped, validation)}
            running = []
            result.log.append(entry)
            write_log(cfg.out / "train_log.csv", result.log)
            say("  " + ", ".join(f"{k} {v:.4g}" for k, v in entry.items()))
    result.seconds = time.perf_counter() - start
    if cfg.store == "float16" and result.log:  # what ships is what is validated: the last line is of the rounded weights
        round_to_float16(shipped)
        result.log[-1].update(validate(shipped, validation))
        write_log(cfg.out / "train_log.csv", result.log)
    shipped.eval()
    _save(shipped, cfg, result)
    return result


def write_log(path: Path, log: list[dict[str, float]]) -> None:
    """The logged entries as CSV (columns: every key any entry has, in first-seen order), rewritten whole."""
    keys = list(dict.fromkeys(k for entry in log for k in entry))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, keys)
        writer.writeheader()
        writer.writerows(log)


def _save(model: Any, cfg: TrainConfig, result: TrainResult) -> None:
    """Weights, ONNX export (checked against torch), card, loss plot; with ``cfg.store`` float16 both files hold float16
    weights (train() rounds the model's weights to them before its last validation, so what is validated is what ships)."""
    from safetensors.torch import save_file

    half = cfg.store == "float16"  # train() has rounded the weights to float16 already (before the last validation)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(cfg.out / "model.safetensors"))
    result.onnx_max_rel_diff = export_onnx(model, cfg.out / "model.onnx", cfg.height, cfg.width, half=half)
    parameters = f"{sum(p.numel() for p in model.parameters()):,} parameters"
    recipe = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k not in ("out",)}
    if cfg.init not in INITS:  # the earlier stage's recipe travels with this one, so the card says how to rebuild both
        recipe["previous"] = read_card(Path(cfg.init))["training"]
    root = network_recipe(recipe)
    stages = len(recipe_chain(recipe))
    then = "then fine-tuned" if stages == 1 else f"then fine-tuned in {stages} stages (training.previous holds the earlier ones)"
    if root["init"] == "teacher":
        teacher, dequantized = f"{root['teacher_card']}: MobileNet encoder, NNConv5 decoder", "its int8 TFLite weights dequantized to float"
        if root.get("expert_network"):
            how = ("one of them chosen per image by a small classifier" if root.get("gate") == "image" else
                   "blended per pixel by a small gate")
            network = (f"two networks, {how} ({parameters} in all): the teacher's ({teacher}), {dequantized}, "
                       "and the network of an earlier run (training.expert_network holds its recipe), "
                       + ("the gate alone trained (both networks as they were)" if cfg.freeze_base and stages == 1 else then))
        elif root.get("refiner"):
            branch = ("a copy of that network with a new last layer" if root.get("refiner_branch") == "teacher" else
                      "a TinyDepthNet that sees the RGB and the network's log-depth")
            network = (f"the teacher's network ({teacher}), {dequantized}, plus a correction branch that starts at zero "
                       f"({branch}; {parameters} in all), {then}")
        else:
            network = f"the teacher's network ({teacher}; {parameters}), {dequantized}, {then}"
        license_ = ("MIT / Apache-2.0 (fine-tuned from FastDepth: fast-depth MIT, STM32 model zoo Apache-2.0, openmv MIT; "
                    "training data: TUM RGB-D CC BY 4.0, see data/train README)")
    else:
        network = f"TinyDepthNet (MobileNetV2-style encoder, U-Net decoder, global context; {parameters}) trained from scratch"
        if stages > 1:
            network += f" in {stages} stages (training.previous holds the earlier ones)"
        license_ = "Apache-2.0 (weights trained here; training data: TUM RGB-D CC BY 4.0, see data/train README)"
    card = {
        "name": "depth_node_small",
        "family": "onnx",
        "description": (
            f"depth_node's embedded default: {network} by `depth-node train` on real RGB-D frames (TUM RGB-D, CC BY 4.0), "
            "teacher-labelled unlabelled frames (teacher: FastDepth) and procedural synthetic scenes; scale-invariant log "
            "loss (lambda 0.85 on metric labels, 1.0 on teacher labels). Predicts metres directly for a camera of about "
            "60 degrees horizontal field of view."),
        "license": license_,
        "weights": "model.onnx",
        "input": {"long_side": cfg.width, "multiple_of": 32, "mean": list(MEAN), "std": list(STD), "interpolation": "area"},
        "output": {"space": "depth", "invariance": "metric"},
        "training": {**recipe, "seconds": round(result.seconds, 1), "initial": result.initial,
                     "final": result.log[-1] if result.log else {}},
    }
    (cfg.out / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False, width=110))
    plot_losses(result.log, cfg.out / "loss.png")


def export_onnx(model: Any, path: Path, height: int, width: int, half: bool = False) -> float:
    """The shipped form: ONNX (opset 17, dynamic batch, height and width; ``half``: float16 initializers), checked
    against torch on a random input; returns the largest relative difference, raises when it exceeds 1e-3 (1e-2 with
    ``half``: the exporter folds batch norm into the convolutions in float32, and those folded weights are rounded to
    float16 again, ~5e-4 each, which adds up over the layers; an export bug is off by far more)."""
    import onnxruntime
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, torch.zeros(1, 3, height, width), str(path), dynamo=False, input_names=["image"], output_names=["depth"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "depth": {0: "batch", 2: "height", 3: "width"}},
                          opset_version=17)
    if half:
        store_initializers_as_float16(path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    got = session.run(None, {"image": x.numpy()})[0]
    difference = float(np.max(np.abs(got - expected) / np.abs(expected)))
    if difference > (1e-2 if half else 1e-3):
        raise RuntimeError(f"ONNX export differs from torch by {difference:.2e} (relative)")
    return difference


def plot_losses(log: list[dict[str, float]], path: Path, width: int = 640, height: int = 320) -> None:
    """Training loss and validation AbsRel (aligned) against step, as a small PNG."""
    if len(log) < 2:
        return
    canvas = np.full((height, width, 3), 255, np.uint8)
    steps = np.array([e["step"] for e in log], float)
    series = [("loss", (180, 119, 31))] + [(k, c) for k, c in (("real_affine_abs_rel", (40, 39, 214)),
                                                              ("real_new_scene_affine_abs_rel", (189, 103, 148)),
                                                              ("real_new_scene_relit_affine_abs_rel", (75, 140, 230)),
                                                              ("synthetic_affine_abs_rel", (44, 160, 44))) if k in log[0]]
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
