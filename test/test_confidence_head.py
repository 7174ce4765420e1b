"""The learnt confidence head (depth-node train-confidence): its loss, its training, its export and how the
pipeline publishes it. Smoke-trained on tiny data (CI never trains for real)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
import yaml

from depth_node.core.camera import PinholeCamera
from depth_node.core.pipeline import DepthPipeline, PipelineConfig
from depth_node.errors import ModelLoadError
from depth_node.estimators import load_estimator
from depth_node.estimators.card import load_card
from depth_node.train.confidence_head import REFERENCE_ERROR, ConfidenceHead, DepthWithConfidence, aligned_log_residual, laplace_nll
from depth_node.train.confidence_trainer import ConfidenceTrainConfig, load_depth_network, scene_seeds, train_confidence
from depth_node.train.data import Samples, synthetic
from depth_node.train.trainer import VALIDATION_SEED_OFFSET, TrainConfig, train


def test_the_residual_ignores_a_global_scale_and_unlabelled_pixels() -> None:
    depth = torch.rand(2, 8, 8) * 4 + 1
    depth[1, :, :4] = float("nan")
    log_pred = torch.log(depth * torch.tensor([2.0, 0.5]).view(2, 1, 1))[:, None]  # right up to each frame's scale
    residual = aligned_log_residual(log_pred, depth)
    assert torch.isnan(residual[1, :, :4]).all() and torch.isfinite(residual[1, :, 4:]).all()
    assert float(residual.nan_to_num().abs().max()) < 1e-5
    wrong = log_pred.clone()
    wrong[0, 0, 0, 0] += 0.3                                                         # one pixel 35 % too far
    assert float(aligned_log_residual(wrong, depth)[0, 0, 0]) == pytest.approx(0.3, abs=1e-5)
    assert torch.isnan(aligned_log_residual(log_pred, torch.full((2, 8, 8), float("nan")))).all()
    np.testing.assert_allclose(aligned_log_residual(log_pred, depth, "metric").nan_to_num().abs().amax(dim=(1, 2)),
                               [math.log(2.0), math.log(2.0)], rtol=1e-5)               # as published: the scale counts


def test_the_affine_residual_is_the_evaluations_scale_and_shift_alignment() -> None:
    from depth_node.eval.metrics import fit

    generator = torch.Generator().manual_seed(0)
    depth = torch.rand(2, 8, 8, generator=generator) * 4 + 1
    depth[1, :, :3] = float("nan")
    pred = 1.3 * depth.nan_to_num(2.0) + 0.4 + 0.1 * torch.randn(2, 8, 8, generator=generator)
    residual = aligned_log_residual(torch.log(pred)[:, None], depth, "affine")
    for i in range(2):
        labelled = torch.isfinite(depth[i])
        p, g = pred[i][labelled].double().numpy(), depth[i][labelled].double().numpy()
        s, t = fit(p, g, "affine")                                                     # eval.metrics, independently
        np.testing.assert_allclose(residual[i][labelled].numpy(), np.log(s * p + t) - np.log(g), atol=1e-5)
    with pytest.raises(ValueError, match="target must be one of"):
        aligned_log_residual(torch.log(pred)[:, None], depth, "disparity")


def test_the_loss_is_least_at_the_mean_absolute_residual() -> None:
    residual = torch.tensor([[[0.01, -0.02, 0.05, float("nan")], [0.2, -0.1, 0.0, 0.04]]])
    best = float(residual[torch.isfinite(residual)].abs().mean())
    losses = {factor: float(laplace_nll(torch.full((1, 1, 2, 4), math.log(best * factor)), residual)) for factor in (0.7, 1.0, 1.4)}
    assert losses[1.0] < losses[0.7] and losses[1.0] < losses[1.4]
    assert losses[1.0] == pytest.approx(1.0 + math.log(best), rel=1e-5)               # |r| / b + ln b at b = mean |r|
    assert float(laplace_nll(torch.zeros(1, 1, 2, 4), torch.full((1, 2, 4), float("nan")))) == 0.0


def test_confidence_is_one_half_at_the_reference_error() -> None:
    class Constant(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x[:, :1], 3.0)

    head = ConfidenceHead().eval()
    with torch.no_grad():
        head.out.bias.fill_(math.log(REFERENCE_ERROR))                                 # b = b₀ everywhere (weights are 0)
        depth, confidence = DepthWithConfidence(Constant(), head)(torch.randn(1, 3, 32, 48))
        assert depth.shape == confidence.shape == (1, 1, 32, 48) and float(depth.min()) == 3.0
        assert torch.allclose(confidence, torch.tensor(0.5))
        head.out.bias.fill_(math.log(3 * REFERENCE_ERROR))
        assert torch.allclose(DepthWithConfidence(Constant(), head)(torch.randn(1, 3, 32, 48))[1], torch.tensor(0.1))  # 1 / (1 + 9)


@pytest.fixture(scope="module")
def smoke_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A depth model written by depth-node train (60 steps on six rendered frames): card, ONNX, safetensors."""
    out = tmp_path_factory.mktemp("depth") / "out"
    frames = synthetic(6, 64, 64, seed=5)
    empty = Samples(frames.rgb[:0], frames.depth[:0], frames.kind[:0], [])
    cfg = TrainConfig(out=out, train_dir=out, steps=60, batch=4, lr=3e-3, width=64, height=64, seed=0, threads=2, log_every=60)
    train(cfg, say=lambda line: None, data=({"real": empty, "teacher": empty, "synthetic": frames}, {}))
    return out / "card.yaml"


def test_no_run_validates_on_scenes_another_seed_trains_on() -> None:
    seeds = range(10)
    training = {scene_seeds(seed)[0] for seed in seeds}
    validation = {scene_seeds(seed)[1] for seed in seeds}
    depth_training = {s for seed in seeds for s in (seed, seed + VALIDATION_SEED_OFFSET)}  # trainer.py's render seeds
    assert not training & validation
    assert not (training | validation) & depth_training


def test_the_head_learns_where_the_frozen_network_errs(smoke_model: Path, tmp_path: Path) -> None:
    """Trained on the smoke model's own errors: the loss falls, the head ranks them better than a random order on
    frames it did not see, the depth output is the input model's exactly, and the card names the new output."""
    train_frames, held_out = synthetic(24, 64, 64, seed=11), synthetic(8, 64, 64, seed=12)
    cfg = ConfidenceTrainConfig(out=tmp_path / "conf", model_card=smoke_model, train_dir=tmp_path, steps=120, batch=8, lr=3e-3,
                                relight=0.0, threads=2, log_every=40)
    empty = Samples(train_frames.rgb[:0], train_frames.depth[:0], train_frames.kind[:0], [])
    result = train_confidence(cfg, say=lambda line: None, data=({"real": empty, "synthetic": train_frames}, {"synthetic": held_out}))
    assert result.log[-1]["loss"] < result.log[0]["loss"] - 0.1, [e["loss"] for e in result.log]
    final = result.log[-1]
    assert final["synthetic_ause_affine"] < 0.9 * final["synthetic_ause_affine_random"], final
    assert final["synthetic_nll"] < result.initial["synthetic_nll"] - 0.05   # (a constant head's AUSE is an arbitrary tie order)
    assert result.depth_max_rel_diff < 1e-5                                                     # the depth is not touched
    card = yaml.safe_load((tmp_path / "conf" / "card.yaml").read_text())
    assert card["output"]["confidence_index"] == 1 and card["weights"] == "model.onnx"
    assert card["confidence_training"]["steps"] == 120 and card["training"]["steps"] == 60     # both recipes kept
    session = onnxruntime.InferenceSession(str(tmp_path / "conf" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["depth", "confidence"]

    # the node's path: the ONNX estimator reads the head, the pipeline publishes it as the confidence
    estimator = load_estimator(tmp_path / "conf" / "card.yaml")
    plain = load_estimator(smoke_model)
    rgb = held_out.rgb[0]
    prediction = estimator.predict(rgb)
    np.testing.assert_array_equal(prediction.values, plain.predict(rgb).values)
    assert prediction.confidence.shape == prediction.values.shape and 0.0 <= prediction.confidence.min() <= prediction.confidence.max() <= 1.0
    camera = PinholeCamera(64, 64, 55.0, 55.0, 31.5, 31.5)
    result_ = DepthPipeline(estimator, PipelineConfig(output_resolution="model")).process(rgb, camera)
    np.testing.assert_array_equal(result_.confidence, prediction.confidence)
    spread = DepthPipeline(estimator, PipelineConfig(output_resolution="model", confidence_tta=True)).process(rgb, camera)
    assert not np.array_equal(spread.confidence, prediction.confidence)                        # a flip spread comes first


def test_a_head_only_for_models_this_project_trained(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text("name: x\nfamily: onnx\nlicense: MIT\nweights: x.onnx\noutput: {space: depth, invariance: metric}\n")
    with pytest.raises(ValueError, match="no 'training' section"):
        load_depth_network(card)
    card.write_text(card.read_text() + "training: {init: scratch}\n")
    with pytest.raises(FileNotFoundError, match="x.safetensors"):
        load_depth_network(card)


def test_the_card_and_the_model_must_agree_on_the_confidence_output(smoke_model: Path, tmp_path: Path) -> None:
    data = yaml.safe_load(smoke_model.read_text())
    data["weights"] = str(smoke_model.parent / "model.onnx")
    for bad in (-1, True, "1"):
        data["output"]["confidence_index"] = bad
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
        with pytest.raises(ModelLoadError, match="confidence_index"):
            load_card(tmp_path / "bad.yaml")
    data["output"]["confidence_index"] = 1                                 # the smoke model has one output only
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ModelLoadError, match="confidence_index 1 but the model has 1 output"):
        load_estimator(tmp_path / "bad.yaml").predict(np.zeros((64, 64, 3), np.uint8))


TRAIN_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "train"
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (TRAIN_DIR / "index.csv").is_file(), reason=f"{TRAIN_DIR} is not present")
def test_train_confidence_command_on_the_shipped_default(tmp_path: Path) -> None:
    """The command as documented, on the shipped card (its network rebuilt from the teacher's TFLite graph and the
    .safetensors beside the ONNX file) and the shared training data, two steps: a head beside the same depth."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "train-confidence", str(tmp_path / "out"), "--model",
                          str(REPO / "models" / "default.yaml"), "--train-dir", str(TRAIN_DIR), "--steps", "2", "--synthetic", "4",
                          "--limit", "4", "--log-every", "2", "--threads", "2"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "depth output matches the input model within" in run.stdout
    card = yaml.safe_load((tmp_path / "out" / "card.yaml").read_text())
    assert card["output"]["confidence_index"] == 1 and card["confidence_training"]["target"] == "affine"
    shipped = yaml.safe_load((REPO / "models" / "default.yaml").read_text())
    assert card["training"] == shipped["training"]  # the depth recipe kept
    # the shipped card already has a head: its sentence is replaced, not repeated, and its head's numbers dropped
    assert card["description"].count("Confidence (second output)") == 1
    assert "confidence_head_ause" in shipped["measured"] and "confidence_head_ause" not in card["measured"]
    assert card["measured"]["rgbd_dev_real_indoor"] == shipped["measured"]["rgbd_dev_real_indoor"]
    rgb = np.random.default_rng(0).integers(0, 255, (192, 256, 3), dtype=np.uint8)
    np.testing.assert_allclose(load_estimator(tmp_path / "out" / "card.yaml").predict(rgb).values,
                               load_estimator(REPO / "models" / "default.yaml").predict(rgb).values, rtol=1e-5)
    bad = subprocess.run([sys.executable, "-m", "depth_node.tools.cli", "train-confidence", str(tmp_path / "x"), "--model",
                          str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "no such card" in bad.stderr
