"""GPU paths. They skip here (no GPU) with the reason; on a GPU machine one command runs them:

    .venv/bin/python -m pytest test/test_gpu.py -v      (torch with CUDA, onnxruntime-gpu for the EP tests)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _models import conv_model, tiny_depth_anything
from depth_node.estimators import load_estimator

RGB = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=f"no CUDA GPU visible to torch {torch.__version__}")


def _ort_has(provider: str) -> bool:
    import onnxruntime as ort

    return provider in ort.get_available_providers()


@pytest.fixture(scope="module")
def da_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_depth_anything(tmp_path_factory.mktemp("gpu_da"), "metric")


@cuda
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-4), ("fp16", 2e-2), ("bf16", 5e-2)])
def test_torch_cuda_matches_cpu_fp32(da_card: Path, precision: str, tolerance: float) -> None:
    reference = load_estimator(da_card).predict(RGB).values
    values = load_estimator(da_card, device="cuda", precision=precision).predict(RGB).values
    assert np.isfinite(values).all(), "NaN/inf on the GPU (norm layers must stay fp32)"
    assert np.abs(values - reference).max() <= tolerance * np.abs(reference).max()


@pytest.mark.skipif(not _ort_has("CUDAExecutionProvider"), reason="onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_onnxruntime_gpu_providers_match_cpu(tmp_path: Path, device: str) -> None:
    if device == "tensorrt" and not _ort_has("TensorrtExecutionProvider"):
        pytest.skip("onnxruntime has no TensorrtExecutionProvider")
    card = conv_model(tmp_path)
    reference = load_estimator(card).predict(RGB).values
    values = load_estimator(card, device=device).predict(RGB).values
    assert np.abs(values - reference).max() <= 1e-3 * np.abs(reference).max()


@cuda
@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is None, reason="TensorRT is not installed")
def test_tensorrt_engine_matches_onnxruntime_and_is_cached(tmp_path: Path) -> None:
    import time

    import yaml

    card = conv_model(tmp_path)
    data = yaml.safe_load(card.read_text())
    data["input"] = {k: v for k, v in data["input"].items() if k not in ("long_side", "multiple_of")} | {"size": [72, 96]}
    card.write_text(yaml.safe_dump(data))
    reference = load_estimator(card).predict(RGB).values
    from depth_node.estimators.tensorrt_runner import TensorrtEstimator
    from depth_node.estimators.card import load_card

    start = time.monotonic()
    first = TensorrtEstimator(load_card(card), precision="fp16", cache_dir=tmp_path / "engines")
    built_s = time.monotonic() - start
    assert first.load_info.startswith("built")
    start = time.monotonic()
    second = TensorrtEstimator(load_card(card), precision="fp16", cache_dir=tmp_path / "engines")
    assert second.load_info == "cache hit" and time.monotonic() - start < built_s
    values = second.predict(RGB).values
    assert np.isfinite(values).all() and np.abs(values - reference).max() <= 1e-2 * np.abs(reference).max()


def _members_with_holes(n: int = 6, h: int = 96, w: int = 128) -> torch.Tensor:
    """Affinely different noisy copies of a depth-like field, each with its own invalid (NaN) pixels."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:h, 0:w] / h
    truth = 1.0 + np.sin(3 * xx) + 0.5 * yy + (xx > 0.7) * 0.8
    members = np.stack([rng.uniform(0.5, 2) * truth + rng.uniform(-1, 1) + rng.normal(0, 0.05, truth.shape) for _ in range(n)])
    members[rng.random(members.shape) < 0.02] = np.nan
    return torch.from_numpy(members.astype(np.float32))


@cuda
@pytest.mark.parametrize("reduction", ["median", "mean"])
@pytest.mark.parametrize("invariance", ["AFFINE", "SCALE", "METRIC"])
def test_ensemble_runs_on_the_cuda_device_and_matches_cpu(reduction: str, invariance: str) -> None:
    from depth_node.core.ensemble import ensemble
    from depth_node.core.spaces import Invariance

    members = _members_with_holes()
    if invariance != "AFFINE":
        members = members - torch.nan_to_num(members, nan=np.inf).amin(dim=(1, 2), keepdim=True) + 0.1  # positive, shift-free
    cpu = ensemble(members, Invariance[invariance], reduction)
    gpu = ensemble(members.cuda(), Invariance[invariance], reduction)
    assert gpu.values.device.type == "cuda" and gpu.uncertainty.device.type == "cuda"
    span = float(torch.nan_to_num(cpu.values, nan=0).abs().max())
    np.testing.assert_array_equal(torch.isnan(gpu.values).cpu().numpy(), torch.isnan(cpu.values).numpy())
    np.testing.assert_allclose(gpu.values.cpu().numpy(), cpu.values.numpy(), atol=1e-3 * span, equal_nan=True)
    np.testing.assert_allclose(gpu.uncertainty.cpu().numpy(), cpu.uncertainty.numpy(), atol=1e-3 * span, equal_nan=True)
    if invariance != "METRIC":
        assert gpu.objective <= 1.01 * cpu.objective + 1e-6, (gpu.objective, cpu.objective)


@cuda
def test_pipeline_ensembles_on_the_models_cuda_device(da_card: Path) -> None:
    from depth_node.core.camera import PinholeCamera
    from depth_node.core.pipeline import DepthPipeline, PipelineConfig

    camera = PinholeCamera(128, 96, 100.0, 100.0, 63.5, 47.5)
    config = PipelineConfig(ensemble_size=4, tta_scales=(1.0, 0.75))
    cpu = DepthPipeline(load_estimator(da_card), config).process(RGB, camera)
    gpu = DepthPipeline(load_estimator(da_card, device="cuda"), config).process(RGB, camera)
    finite = np.isfinite(cpu.depth_m)
    assert finite.mean() > 0.9 and np.array_equal(finite, np.isfinite(gpu.depth_m))
    assert np.abs(gpu.depth_m - cpu.depth_m)[finite].max() <= 1e-3 * np.abs(cpu.depth_m[finite]).max()
    assert np.abs(gpu.confidence - cpu.confidence)[finite].max() <= 1e-2
