"""Fine-tuning (``depth-node train``): losses against hand computations, augmentation, data at the card's geometry, the
network behind a card, and smoke runs on tiny data (CI never trains for real)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
import yaml

from depth_node.estimators.card import InputRules
from depth_node.train.data import VALIDATION_SOURCES, Samples, augment, real_rgbd
from depth_node.train.losses import gradient_loss, silog_loss
from depth_node.train.trainer import TrainConfig, to_tensor, train

REPO = Path(__file__).resolve().parent.parent
TRAIN_DIR = REPO.parent / "shared" / "data" / "train"
FASTDEPTH = REPO.parent / "shared" / "models" / "fastdepth" / "fast_depth_224.tflite"
needs_fastdepth = pytest.mark.skipif(not FASTDEPTH.is_file(), reason="../shared/models/fastdepth is absent")
needs_train_dir = pytest.mark.skipif(not (TRAIN_DIR / "index.csv").is_file(), reason=f"{TRAIN_DIR} is not present")


def rendered(count: int, size: int = 64, seed: int = 5) -> Samples:
    """Rendered rooms with exact depth (metres, NaN beyond 80 m), square frames of ``size``."""
    from depth_node.synth.writer import SynthSpec, generate

    focal = 0.8 * size
    spec = SynthSpec(scenes=("room",), frames=count, width=size, height=size, seed=seed, intrinsics=(focal, focal, (size - 1) / 2, (size - 1) / 2))
    frames = list(generate(spec))[:count]
    depth = np.stack([np.where(f.depth_m < 80, f.depth_m, np.nan) for f in frames]).astype(np.float32)
    return Samples(np.stack([f.rgb for f in frames]), depth, [f"room/{f.index}" for f in frames])


def test_silog_loss_is_zero_for_exact_depth_and_charges_15_percent_of_a_scale_error() -> None:
    depth = torch.rand(2, 8, 8) * 5 + 0.5
    depth[0, 0, 0] = float("nan")                                           # no label: ignored
    log_true = torch.log(torch.nan_to_num(depth, nan=1.0))[:, None]
    assert float(silog_loss(log_true, depth)) == pytest.approx(0, abs=1e-3)
    scaled = log_true + math.log(2.0)                                        # everything twice as far
    assert float(silog_loss(scaled, depth)) == pytest.approx(math.sqrt(0.15) * math.log(2.0), rel=1e-3)  # √(1 − λ)·|ln 2|
    assert float(silog_loss(scaled, depth, lam=1.0)) == pytest.approx(0, abs=1e-3)                      # λ = 1: scale-free
    empty = torch.full((1, 4, 4), float("nan"))
    assert float(silog_loss(torch.zeros(1, 1, 4, 4), empty)) == 0.0


def test_gradient_loss_ignores_scale_and_unlabelled_pixels_and_sees_edges() -> None:
    depth = torch.rand(2, 16, 16) * 4 + 1
    log_true = torch.log(depth)[:, None]
    assert float(gradient_loss(log_true, depth)) == 0.0
    assert float(gradient_loss(log_true + math.log(3.0), depth)) == pytest.approx(0, abs=1e-6)  # a global scale is free
    holes = depth.clone()
    holes[:, :, :8] = float("nan")
    wrong_where_unlabelled = log_true.clone()
    wrong_where_unlabelled[..., :8] = 5.0
    assert float(gradient_loss(wrong_where_unlabelled, holes)) == pytest.approx(0, abs=1e-6)
    step = log_true.clone()
    step[..., 8:] += 0.5                                                       # a false edge down the middle
    assert float(gradient_loss(step, depth)) > 0.01


def test_augmentation_moves_labels_with_pixels_and_zoom_crops_rescale_them() -> None:
    """Flip: pixels and labels together. A zoom-in crop magnifies like a longer lens: a flat 2 m wall becomes
    2 m × the crop fraction (0.6–1). Brightness and contrast change pixels only; the inputs are left as they were."""
    h, w = 32, 48
    ramp = np.tile(np.arange(w, dtype=np.float32) + 10, (h, 1))               # labels and pixels both rise to the right
    rgb = np.stack([np.repeat((np.arange(w) * 5).astype(np.uint8)[None, :, None], h, 0).repeat(3, 2)] * 4)
    depth = np.stack([ramp] * 4)
    flips = uncropped = 0
    for seed in range(20):
        out_rgb, out_depth = augment(rgb, depth, np.random.default_rng(seed))
        for i in range(4):
            label_falls = out_depth[i, 0, 0] > out_depth[i, 0, -1]
            assert label_falls == (int(out_rgb[i, 0, 0, 0]) > int(out_rgb[i, 0, -1, 0]))  # flipped together
            flips += label_falls
            uncropped += np.array_equal(out_depth[i], ramp[:, ::-1] if label_falls else ramp)
    assert 15 < flips < 65 and 15 < uncropped < 65                             # each about half of the 80 samples
    wall = np.full((2, 32, 48), 2.0, np.float32)
    for seed in range(30):
        _, out = augment(np.zeros((2, 32, 48, 3), np.uint8), wall, np.random.default_rng(seed))
        assert all(len(np.unique(out[i])) == 1 and 1.2 - 1e-6 <= out[i, 0, 0] <= 2.0 for i in range(2))
    assert rgb.dtype == np.uint8 and depth[0, 0, 0] == 10 and (wall == 2.0).all()  # inputs untouched


@needs_train_dir
def test_real_frames_come_at_the_cards_geometry_and_the_validation_sources_are_held_out() -> None:
    square = InputRules(long_side=224, multiple_of=32, keep_aspect=False)
    frames = real_rgbd(TRAIN_DIR, square, limit=3)
    assert frames.rgb.shape == (3, 224, 224, 3) and frames.depth.shape == (3, 224, 224)   # the whole 640×480 frame, squashed
    assert not any(name.split("/")[0] in VALIDATION_SOURCES["real"] + VALIDATION_SOURCES["real_new_scene"] for name in frames.names)
    held_out = real_rgbd(TRAIN_DIR, InputRules(long_side=256, multiple_of=32), validation="real_new_scene")
    assert held_out.rgb.shape[1:3] == (192, 256) and {n.split("/")[0] for n in held_out.names} == {"tum_fr3_cabinet_keyframes"}
    valid = np.isfinite(held_out.depth)
    assert 0.3 < valid.mean() < 1 and 0.2 < np.nanmedian(held_out.depth) < 10      # metres, holes NaN


@needs_fastdepth
def test_the_network_behind_each_kind_of_card(tmp_path: Path) -> None:
    """A TFLite card (imported as float), the default (export of it: a network: block) and a trained card (network:
    block + fine-tuned weights) give the same architecture; the default's ONNX file equals its torch network."""
    from safetensors.torch import save_file

    from depth_node.train.network import ImportedNet, load_depth_network

    tflite_net, _ = load_depth_network("fastdepth")
    default_net, default_card = load_depth_network(REPO / "models" / "default.yaml")
    assert isinstance(tflite_net, ImportedNet) and default_card["network"] == {"tflite": "fastdepth"}
    x = to_tensor(np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8))
    with torch.no_grad():
        expected = default_net(x).numpy()
        torch.testing.assert_close(tflite_net(x), default_net(x))
    session = onnxruntime.InferenceSession(str(REPO / "models" / default_card["weights"]), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], expected, rtol=1e-4, atol=1e-5)

    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in tflite_net.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    card = {"name": "ft", "family": "onnx", "license": "MIT", "weights": "none.onnx", "output": {"space": "depth", "invariance": "metric"},
            "network": {"tflite": "fastdepth", "weights": "w.safetensors"}}
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(card))
    tuned, _ = load_depth_network(tmp_path / "ft.yaml")
    assert all(torch.equal(tuned.state_dict()[k], v) for k, v in state.items())
    card["network"]["weights"] = "gone.safetensors"
    (tmp_path / "gone.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(FileNotFoundError, match="gone.safetensors"):
        load_depth_network(tmp_path / "gone.yaml")
    with pytest.raises(ValueError, match="neither a TFLite card nor"):
        load_depth_network(REPO / "models" / "depth_anything_v2_small.yaml")


@needs_fastdepth
def test_fine_tuning_lowers_the_loss_and_writes_a_card_that_rebuilds_the_network(tmp_path: Path) -> None:
    """A few steps from the default on rendered frames: the loss falls, the ONNX export equals torch at any size and
    batch, the card keeps the start's input geometry and names the TFLite card and the weights, and the network
    rebuilt from the card predicts what the ONNX file does."""
    from depth_node.train.network import load_depth_network

    frames = rendered(6)
    cfg = TrainConfig(out=tmp_path / "out", train_dir=tmp_path, init="default", steps=40, batch=4, lr=1e-3, seed=0, threads=2, log_every=20)
    result = train(cfg, say=lambda line: None, data=(frames, {"rendered": frames}))
    losses = [entry["loss"] for entry in result.log]
    assert losses[-1] < 0.8 * losses[0], losses
    assert result.log[-1]["rendered_abs_rel"] < result.initial["rendered_abs_rel"]
    assert result.onnx_max_rel_diff < 1e-4
    card = yaml.safe_load((tmp_path / "out" / "card.yaml").read_text())
    shipped = yaml.safe_load((REPO / "models" / "default.yaml").read_text())
    assert card["input"] == shipped["input"] and card["output"] == {"space": "depth", "invariance": "metric"}
    assert card["network"] == {"tflite": "fastdepth", "weights": "model.safetensors"} and card["training"]["init"] == "default"
    for name in ("model.onnx", "model.safetensors", "train_log.csv", "loss.png"):
        assert (tmp_path / "out" / name).is_file()
    session = onnxruntime.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = to_tensor(frames.rgb[:3])
    rebuilt, _ = load_depth_network(tmp_path / "out" / "card.yaml")
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], rebuilt(x).numpy(), rtol=1e-4, atol=1e-5)
    assert session.run(None, {"image": np.zeros((2, 3, 96, 128), np.float32)})[0].shape == (2, 1, 96, 128)  # any batch and size
    again = TrainConfig(out=tmp_path / "again", train_dir=tmp_path, init=str(tmp_path / "out" / "card.yaml"), steps=2, batch=2, threads=2)
    train(again, say=lambda line: None, data=(frames, {}))                    # a run goes on from an earlier run's card
    assert yaml.safe_load((tmp_path / "again" / "card.yaml").read_text())["network"]["tflite"] == "fastdepth"


@needs_fastdepth
def test_same_seed_same_model_and_a_frozen_encoder_stays_as_it_was(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from depth_node.train.network import load_depth_network

    frames = rendered(4)
    weights = []
    for run, freeze in (("a", True), ("b", True), ("c", False)):
        cfg = TrainConfig(out=tmp_path / run, train_dir=tmp_path, init="fastdepth", freeze_encoder=freeze, steps=3, batch=2, lr=1e-3,
                          seed=3, threads=1, log_every=3)
        train(cfg, say=lambda line: None, data=(frames, {}))
        weights.append(load_file(str(tmp_path / run / "model.safetensors")))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    start, _ = load_depth_network("fastdepth")
    encoder = {name for name, p in start.named_parameters() if any(p is q for q in start.encoder_parameters())}
    assert 0 < len(encoder) < len(weights[0])
    initial = start.state_dict()
    assert all(torch.equal(weights[0][k], initial[k]) for k in encoder)                  # frozen: untouched
    assert not all(torch.equal(weights[0][k], initial[k]) for k in set(weights[0]) - encoder)  # the decoder learnt
    assert not all(torch.equal(weights[2][k], initial[k]) for k in encoder)              # not frozen: the encoder learnt too


def test_options_are_checked_before_anything_is_loaded(tmp_path: Path) -> None:
    for bad, message in (({"steps": 0}, "steps must be positive"), ({"batch": 1}, "batch at least 2"), ({"lr": -1.0}, "lr must be positive")):
        with pytest.raises(ValueError, match=message):
            train(TrainConfig(out=tmp_path / "x", train_dir=tmp_path / "nowhere", **bad), say=lambda line: None)
    assert not (tmp_path / "x").exists()


@needs_fastdepth
@needs_train_dir
def test_train_command_on_the_shared_data(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "depth_node.tools.cli", "train"]
    run = subprocess.run(cli + [str(tmp_path / "out"), "--train-dir", str(TRAIN_DIR), "--steps", "4", "--batch", "2", "--limit", "3",
                                "--log-every", "2", "--threads", "2"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "training frames: 3; validation: 9 real, 58 real_new_scene" in run.stderr
    assert "ONNX matches torch" in run.stdout
    log = (tmp_path / "out" / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,loss,lr,seconds,real_abs_rel,real_delta1,real_aligned_abs_rel") and len(log) == 3
    help_text = subprocess.run(cli + ["--help"], capture_output=True, text=True, timeout=60).stdout
    for gone in ("--expert", "--gate", "--refiner", "--keep", "--ema", "--mix", "--store", "--relight", "--synthetic"):
        assert gone not in help_text                                             # --help lists only what works
    bad = subprocess.run(cli + [str(tmp_path / "x"), "--steps", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "steps must be positive" in bad.stderr and not (tmp_path / "x").exists()
