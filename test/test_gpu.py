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
