"""Training code of the embedded default model: smoke-trained on tiny data (CI never trains for real)."""

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

from depth_node.train.data import METRIC, RELATIVE, Samples, augment, crop_to_aspect, relight, synthetic
from depth_node.train.losses import gradient_loss, router_loss, silog_loss
from depth_node.train.network import TinyDepthNet
from depth_node.tools.train_cmd import parse_mix
from depth_node.train.trainer import TrainConfig, source_pools, train

REPO = Path(__file__).resolve().parent.parent
TRAIN_DIR = REPO.parent / "shared" / "data" / "train"


def test_network_predicts_positive_metres_at_any_multiple_of_32() -> None:
    model = TinyDepthNet().eval()
    with torch.no_grad():
        for h, w in ((64, 64), (96, 160), (192, 256)):
            depth = model(torch.randn(1, 3, h, w))
            assert depth.shape == (1, 1, h, w) and bool((depth > 0).all())
    assert sum(p.numel() for p in model.parameters()) * 4 < 10e6  # the weights fit the 10 MB budget in fp32


def test_silog_loss_is_zero_for_exact_depth_and_scale_invariant_at_lambda_1() -> None:
    depth = torch.rand(2, 8, 8) * 5 + 0.5
    depth[0, 0, 0] = float("nan")                                           # no label: ignored
    log_true = torch.log(torch.nan_to_num(depth, nan=1.0))[:, None]
    assert float(silog_loss(log_true, depth, torch.tensor([0.85, 1.0]))) == pytest.approx(0, abs=1e-3)
    scaled = log_true + math.log(2.0)                                        # everything twice as far
    relative = float(silog_loss(scaled, depth, torch.tensor([1.0, 1.0])))
    metric = float(silog_loss(scaled, depth, torch.tensor([0.85, 0.85])))
    assert relative == pytest.approx(0, abs=1e-3)                            # teacher labels: scale is free
    assert metric == pytest.approx(math.sqrt(0.15) * math.log(2.0), rel=1e-3)  # metric labels: the scale costs
    empty = torch.full((1, 4, 4), float("nan"))
    assert float(silog_loss(torch.zeros(1, 1, 4, 4), empty, torch.tensor([0.85]))) == 0.0


def test_router_loss_labels_the_better_network_and_pulls_a_saturated_gate_back() -> None:
    """--gate image: binary cross-entropy against "the expert's SILog is lower" per labelled sample, written out by hand
    here; a gate saturated on the wrong side still gets a full-size gradient (the blend's depth loss gives it ~0)."""
    depth = torch.rand(3, 8, 8) * 4 + 1
    depth[2] = float("nan")                                                       # no label: no vote
    truth = torch.log(torch.nan_to_num(depth, nan=1.0))[:, None]
    noise = torch.randn(3, 1, 8, 8) * 0.3
    base = torch.stack([truth[0], truth[1] + noise[1], truth[2]])                 # base exact on sample 0
    expert = torch.stack([truth[0] + noise[0], truth[1], truth[2]])               # expert exact on sample 1
    logit = torch.tensor([0.5, -1.5, 3.0]).view(3, 1, 1, 1).requires_grad_(True)
    loss = router_loss(logit, base, expert, depth, torch.full((3,), 0.85))
    expected = (math.log(1 + math.exp(0.5)) + math.log(1 + math.exp(1.5))) / 2  # -ln(1-σ(0.5)), -ln σ(-1.5)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert float(logit.grad[2]) == 0.0
    saturated = torch.tensor([-30.0, -30.0, 0.0]).view(3, 1, 1, 1).requires_grad_(True)  # both pushed to the base
    router_loss(saturated, base, expert, depth, torch.full((3,), 0.85)).backward()
    assert float(saturated.grad[1]) == pytest.approx(-0.5, abs=1e-6)             # (σ − 1) / 2 labelled samples


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


def test_augmentation_moves_labels_with_pixels() -> None:
    rng = np.random.default_rng(0)
    h, w = 32, 48
    depth = np.stack([np.tile(np.arange(w, dtype=np.float32) + 100 * k, (h, 1)) for k in range(4)])
    rgb = np.stack([np.repeat((np.arange(w) * 5 % 256).astype(np.uint8)[None, :, None], h, 0).repeat(3, 2)] * 4)
    kind = np.array([METRIC, METRIC, RELATIVE, RELATIVE], np.int8)
    out_rgb, out_depth = augment(rgb, depth, kind, rng, strong=False)      # flips only: pixels and labels together
    for i in range(4):
        flipped = out_depth[i, 0, 0] > out_depth[i, 0, -1]
        np.testing.assert_array_equal(out_depth[i], depth[i][:, ::-1] if flipped else depth[i])
        np.testing.assert_array_equal(out_rgb[i], rgb[i][:, ::-1] if flipped else rgb[i])
    labelled = np.where(kind[:, None, None] == METRIC, 1.0 + depth / 1000, 1000.0 + depth).astype(np.float32)
    for seed in range(20):  # CutMix pastes labels only from a sample of the same kind (metric < 1000 ≤ relative)
        _, mixed = augment(rgb, labelled, kind, np.random.default_rng(seed), strong=True)
        assert (mixed[:2] < 1000).all() and (mixed[2:] >= 1000).all()
    assert rgb.dtype == np.uint8 and depth[0, 0, 0] == 0                  # inputs untouched


def test_the_clean_view_has_the_same_geometry_and_no_photometric_change() -> None:
    """augment(..., geometric=): flip, crop and CutMix as the student's view, colours untouched; same random draws."""
    h, w = 32, 48
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [220, 220, 40]], np.uint8)
    rgb = np.stack([np.broadcast_to(c, (h, w, 3)) for c in colours]).copy()        # sample k: one colour …
    depth = np.stack([np.full((h, w), 10.0 + k, np.float32) for k in range(4)])     # … and one label value
    kind = np.array([RELATIVE] * 4, np.int8)                                        # one kind: CutMix between all
    mixed = 0
    for seed in range(15):
        clean = np.empty_like(rgb)
        seen, labels = augment(rgb, depth, kind, np.random.default_rng(seed), relight_p=0.5, geometric=clean)
        plain = augment(rgb, depth, kind, np.random.default_rng(seed), relight_p=0.5)
        np.testing.assert_array_equal(seen, plain[0])                               # the student's view is unchanged
        np.testing.assert_array_equal(labels, plain[1])
        source = np.rint(labels - 10.0).astype(int)                                 # which sample each pixel came from
        np.testing.assert_array_equal(clean, colours[source])                       # its colour, exactly: no jitter
        mixed += int(sum(len(np.unique(source[i])) > 1 for i in range(4)))
        assert not np.array_equal(seen, clean)                                      # while the student's view changed
    assert mixed > 0                                                                # CutMix happened and was followed


def test_zoom_crop_rescales_metric_labels_like_a_longer_lens() -> None:
    rgb = np.zeros((2, 32, 48, 3), np.uint8)
    depth = np.full((2, 32, 48), 2.0, np.float32)
    kind = np.array([METRIC, RELATIVE], np.int8)
    seen = set()
    for seed in range(30):
        _, out = augment(rgb, depth, kind, np.random.default_rng(seed), strong=True)
        assert len(np.unique(out[0])) == 1 and 1.2 - 1e-6 <= out[0, 0, 0] <= 2.0   # 2 m × crop fraction in [0.6, 1]
        seen.add(bool(out[0, 0, 0] < 2.0))
        np.testing.assert_array_equal(out[1], 2.0)                                # relative labels: scale is free anyway
    assert seen == {True, False}                                                   # both cropped and uncropped happen


def test_relight_changes_light_not_labels() -> None:
    rng = np.random.default_rng(0)
    grey = np.full((48, 64, 3), 128, np.uint8)
    lit = [relight(grey, rng) for _ in range(40)]
    assert all(image.shape == grey.shape and image.dtype == np.uint8 for image in lit)
    assert all(not np.array_equal(image, grey) for image in lit)                 # at least one pool or shadow each time
    assert any((image == 255).any() for image in lit)                           # highlights clip, as a sensor's do
    assert any((image < 96).any() for image in lit)                             # and shadows darken
    for image in lit:                                                           # a gain field: colour ratios kept
        assert np.abs(image.astype(int)[..., 0] - image[..., 2]).max() <= 1     # (grey stays grey)
    smooth = np.abs(np.diff(lit[0].astype(int), axis=1)).max()
    assert smooth <= 12                                                         # smooth light, no new edges
    np.testing.assert_array_equal(relight(grey, np.random.default_rng(5)), relight(grey, np.random.default_rng(5)))
    depth = np.random.default_rng(1).uniform(1, 5, (3, 48, 64)).astype(np.float32)
    rgb = np.stack([grey] * 3)
    kind = np.array([METRIC, RELATIVE, METRIC], np.int8)
    out_rgb, out_depth = augment(rgb, depth, kind, np.random.default_rng(2), strong=False, relight_p=1.0)
    for i in range(3):                                                          # labels: only flipped, never relit
        assert np.array_equal(out_depth[i], depth[i]) or np.array_equal(out_depth[i], depth[i][:, ::-1])
        assert not np.array_equal(out_rgb[i], rgb[i])


def test_crop_to_aspect_keeps_the_centre() -> None:
    image = np.arange(720 * 1280).reshape(720, 1280)
    crop = crop_to_aspect(image, 256, 192)
    assert crop.shape == (720, 960) and crop[0, 0] == image[0, 160]


def test_training_smoke_loss_falls_and_export_matches(tmp_path: Path) -> None:
    """A few steps on a handful of synthetic frames: the loss falls, the ONNX export equals torch, a card is written."""
    frames = synthetic(6, 64, 64, seed=5)
    sources = {"real": frames, "teacher": Samples(frames.rgb[:0], frames.depth[:0], frames.kind[:0], []), "synthetic": frames}
    cfg = TrainConfig(out=tmp_path / "out", train_dir=tmp_path, steps=60, batch=4, lr=3e-3, width=64, height=64, seed=0,
                      threads=2, log_every=20)
    result = train(cfg, say=lambda line: None, data=(sources, {"synthetic": frames}))
    losses = [entry["loss"] for entry in result.log]
    assert losses[-1] < 0.7 * losses[0], losses
    assert result.onnx_max_rel_diff < 1e-4
    card = yaml.safe_load((tmp_path / "out" / "card.yaml").read_text())
    assert card["output"] == {"space": "depth", "invariance": "metric"} and card["training"]["seed"] == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"image": np.zeros((1, 3, 96, 128), np.float32)})[0].shape == (1, 1, 96, 128)  # any size
    for name in ("model.safetensors", "train_log.csv", "loss.png"):
        assert (tmp_path / "out" / name).is_file()


def test_same_seed_same_model(tmp_path: Path) -> None:
    frames = synthetic(4, 64, 64, seed=2)
    empty = Samples(frames.rgb[:0], frames.depth[:0], frames.kind[:0], [])
    weights = []
    for run in ("a", "b"):
        cfg = TrainConfig(out=tmp_path / run, train_dir=tmp_path, steps=5, batch=2, width=64, height=64, seed=3, threads=1, log_every=5)
        train(cfg, say=lambda line: None, data=({"real": empty, "teacher": empty, "synthetic": frames}, {}))
        weights.append((tmp_path / run / "model.onnx").read_bytes())
    assert weights[0] == weights[1]


def test_ema_ships_the_average_of_the_steps(tmp_path: Path) -> None:
    """--ema: a decay near 0 ships the last step's weights, a decay near 1 those after the first step (where torch's
    average starts); compared with plain runs of 8 and of 1 step (same seed, same learning rate at step 1)."""
    from safetensors.torch import load_file

    frames = synthetic(4, 64, 64, seed=2)
    empty = Samples(frames.rgb[:0], frames.depth[:0], frames.kind[:0], [])
    shipped = {}
    for name, steps, decay in (("last", 8, 0.0), ("first", 1, 0.0), ("ema0", 8, 1e-12), ("ema1", 8, 1 - 1e-9), ("ema", 8, 0.5)):
        cfg = TrainConfig(out=tmp_path / name, train_dir=tmp_path, steps=steps, batch=2, lr=3e-3, width=64, height=64, seed=3,
                          threads=1, log_every=steps, ema=decay)
        train(cfg, say=lambda line: None, data=({"real": empty, "teacher": empty, "synthetic": frames}, {}))
        shipped[name] = load_file(str(tmp_path / name / "model.safetensors"))

    def distance(a: str, b: str) -> float:
        return sum(float((shipped[a][k] - shipped[b][k]).abs().sum()) for k in shipped[a] if shipped[a][k].is_floating_point())

    moved = distance("last", "first")
    assert moved > 0
    assert distance("ema0", "last") < 1e-4 * moved
    assert distance("ema1", "first") < 1e-4 * moved
    assert 0.05 * moved < distance("ema", "last") < moved and 0.05 * moved < distance("ema", "first") < moved


def test_a_run_goes_on_from_an_earlier_runs_card(tmp_path: Path) -> None:
    """--init CARD: the next stage starts from the earlier run's weights exactly (its validation before training is the
    earlier run's last), its card keeps the earlier recipe under training.previous, and a chain of stages rebuilds."""
    from safetensors.torch import load_file

    from depth_node.train.trainer import build_student, load_depth_network

    frames = synthetic(4, 64, 64, seed=2)
    empty = Samples(frames.rgb[:0], frames.depth[:0], frames.kind[:0], [])
    data = ({"real": empty, "teacher": empty, "synthetic": frames}, {"synthetic": frames})
    first = train(TrainConfig(out=tmp_path / "one", train_dir=tmp_path, steps=6, batch=2, lr=3e-3, width=64, height=64, seed=3,
                              threads=1, log_every=6), say=lambda line: None, data=data)
    card_one = tmp_path / "one" / "card.yaml"
    cfg = TrainConfig(out=tmp_path / "two", train_dir=tmp_path, init=str(card_one), steps=4, batch=2, lr=1e-3, width=64, height=64,
                      seed=4, threads=1, log_every=4)
    start = build_student(cfg).state_dict()
    saved = load_file(str(tmp_path / "one" / "model.safetensors"))
    assert set(start) == set(saved) and all(torch.equal(start[k], saved[k]) for k in saved)
    second = train(cfg, say=lambda line: None, data=data)
    assert second.initial["synthetic_affine_abs_rel"] == pytest.approx(first.log[-1]["synthetic_affine_abs_rel"], rel=1e-6)
    card = yaml.safe_load((tmp_path / "two" / "card.yaml").read_text())
    assert card["training"]["init"] == str(card_one) and card["training"]["previous"]["init"] == "scratch"
    assert card["training"]["previous"]["steps"] == 6 and "in 2 stages" in card["description"]
    train(TrainConfig(out=tmp_path / "three", train_dir=tmp_path, init=str(tmp_path / "two" / "card.yaml"), steps=2, batch=2,
                      width=64, height=64, seed=5, threads=1, log_every=2), say=lambda line: None, data=data)
    (tmp_path / "one" / "card.yaml").unlink()  # the chain rebuilds from the recipes the last card holds, not from files
    network, card = load_depth_network(tmp_path / "three" / "card.yaml")
    assert "in 3 stages" in card["description"] and isinstance(network, TinyDepthNet)
    session = onnxruntime.InferenceSession(str(tmp_path / "three" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"image": x})[0], network(torch.from_numpy(x)).numpy(), rtol=1e-4)
    with pytest.raises(ValueError, match="leave out --refiner"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, init=str(tmp_path / "two" / "card.yaml"), refiner=True).check()
    with pytest.raises(ValueError, match="needs --refiner"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, init=str(tmp_path / "two" / "card.yaml"), freeze_base=True).check()
    with pytest.raises(FileNotFoundError, match="card.yaml that depth-node train wrote"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, init=str(tmp_path / "none.yaml")).check()
    with pytest.raises(ValueError, match="scratch, teacher or the card.yaml"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, init="imagenet").check()


def test_float16_store_halves_the_files_and_ships_the_rounded_weights(tmp_path: Path) -> None:
    """--store float16: the same run's weights rounded to float16 (safetensors in float16, ONNX initializers float16
    behind casts, about half the size), ONNX = torch of the rounded weights, the last validation is of what ships, and a
    confidence head trained on it is stored the same way without changing the depth."""
    import onnx
    from safetensors.torch import load_file

    from depth_node.train.confidence_trainer import ConfidenceTrainConfig, train_confidence
    from depth_node.train.trainer import load_depth_network

    frames = synthetic(4, 64, 64, seed=2)
    empty = Samples(frames.rgb[:0], frames.depth[:0], frames.kind[:0], [])
    results = {}
    for store in ("float32", "float16"):
        cfg = TrainConfig(out=tmp_path / store, train_dir=tmp_path, steps=4, batch=2, lr=3e-3, width=64, height=64, seed=3,
                          threads=1, log_every=4, store=store)
        results[store] = train(cfg, say=lambda line: None, data=({"real": empty, "teacher": empty, "synthetic": frames}, {"synthetic": frames}))
    full, half = (load_file(str(tmp_path / store / "model.safetensors")) for store in ("float32", "float16"))
    for name, value in full.items():
        if value.is_floating_point():
            assert half[name].dtype == torch.float16 and torch.equal(half[name], value.half()), name
    sizes = {store: (tmp_path / store / "model.onnx").stat().st_size for store in ("float32", "float16")}
    assert sizes["float16"] < 0.55 * sizes["float32"], sizes
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(tmp_path / "float16" / "model.onnx")).graph.initializer)
    assert results["float16"].onnx_max_rel_diff < 1e-3
    network, card = load_depth_network(tmp_path / "float16" / "card.yaml")
    assert card["training"]["store"] == "float16"
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(tmp_path / "float16" / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"image": x})[0], network(torch.from_numpy(x)).numpy(), rtol=1e-3)
    logged = results["float16"].log[-1]["synthetic_affine_abs_rel"]
    assert logged != results["float32"].log[-1]["synthetic_affine_abs_rel"] and logged == pytest.approx(
        results["float32"].log[-1]["synthetic_affine_abs_rel"], rel=1e-2)  # validated after rounding: close, not equal

    conf = ConfidenceTrainConfig(out=tmp_path / "conf", model_card=tmp_path / "float16" / "card.yaml", train_dir=tmp_path, steps=2,
                                 batch=2, relight=0.0, threads=1, log_every=2)
    result = train_confidence(conf, say=lambda line: None, data=({"real": empty, "synthetic": frames}, {}))
    assert result.depth_max_rel_diff < 1e-3
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(tmp_path / "conf" / "model.onnx")).graph.initializer)
    with pytest.raises(ValueError, match="--store is one of"):
        TrainConfig(out=tmp_path, train_dir=tmp_path, store="int8").check()


def test_batch_mix_draws_each_source_by_its_share_and_leaves_out_zero_shares() -> None:
    frames = synthetic(2, 32, 32, seed=1)
    empty = Samples(frames.rgb[:0], frames.depth[:0], frames.kind[:0], [])
    names, pools, p = source_pools({"real": frames, "teacher": frames, "synthetic": frames}, {"real": 1, "teacher": 0, "synthetic": 3})
    assert names == ["real", "synthetic"] and list(pools) == names and p.tolist() == [0.25, 0.75]
    names, _, p = source_pools({"real": empty, "teacher": frames, "synthetic": frames}, {"real": 0.2, "teacher": 0.4, "synthetic": 0.4})
    assert names == ["teacher", "synthetic"] and p.tolist() == [0.5, 0.5]  # an empty source gives its share to the others
    with pytest.raises(ValueError, match="sources with a share > 0 are empty \\(real\\)"):
        source_pools({"real": empty, "teacher": frames, "synthetic": frames}, {"real": 1, "teacher": 0, "synthetic": 0})
    assert parse_mix("0.2,0.4,0.4") == {"real": 0.2, "teacher": 0.4, "synthetic": 0.4} == TrainConfig(Path(), Path()).mix
    for bad in ("1,1", "0,0,0", "1,-1,1", "a,b,c", "1,nan,1"):
        with pytest.raises(ValueError, match="--mix takes three shares"):
            parse_mix(bad)


@pytest.mark.skipif(not (TRAIN_DIR / "index.csv").is_file(), reason=f"{TRAIN_DIR} is not present")
def test_train_command_on_the_shared_data(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "train", str(tmp_path / "out"), "--train-dir", str(TRAIN_DIR),
                          "--steps", "4", "--batch", "2", "--synthetic", "2", "--limit", "3", "--log-every", "2", "--size", "128x96", "--mix", "1,2,0"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "training samples: 3 real RGB-D, 3 teacher-labelled, 0 synthetic" in run.stderr  # a share of 0: not rendered
    assert "rendering synthetic scenes" not in run.stderr
    assert "ONNX matches torch" in run.stdout
    card = yaml.safe_load((tmp_path / "out" / "card.yaml").read_text())
    assert card["training"]["mix"] == {"real": 1.0, "teacher": 2.0, "synthetic": 0.0}  # recorded: the run is reproducible
    bad = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "train", str(tmp_path / "x"), "--size", "100x100"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "multiples of 32" in bad.stderr
