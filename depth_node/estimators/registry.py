"""Model family name → estimator factory, and the one function that turns a card into a running estimator.

``backend: auto`` picks the family's runtime from the weights: an ``.onnx`` file runs on ONNX Runtime (or, with
``backend: tensorrt``, as a cached native TensorRT engine), a Hugging Face / diffusers folder on torch, a
``.tflite`` file on LiteRT. Each family imports its runtime lazily, so a missing
optional runtime only affects the cards that need it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from depth_node.errors import ModelLoadError
from depth_node.estimators.base import DepthEstimator
from depth_node.estimators.card import ModelCard, load_card

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch", "tflite")
Factory = Callable[[ModelCard, str, str, int, str], DepthEstimator]


def _require(card: ModelCard, backend: str, allowed: tuple[str, ...]) -> str:
    if backend == "auto":
        return allowed[0]
    if backend not in allowed:
        raise ModelLoadError(f"model card {card.path}: family {card.family!r} with these weights runs on {', '.join(allowed)}, not {backend!r}")
    return backend


def _onnx(card: ModelCard, backend: str, device: str, num_threads: int, precision: str) -> DepthEstimator:
    if _require(card, backend, ("onnxruntime", "tensorrt")) == "tensorrt":
        from depth_node.estimators.tensorrt_runner import TensorrtEstimator

        return TensorrtEstimator(card, precision=precision)
    from depth_node.estimators.onnx_runner import OnnxEstimator

    return OnnxEstimator(card, device=device, num_threads=num_threads)


def _torch_family(module: str, class_name: str) -> Factory:
    """A family whose native weights run on torch and whose exported ``.onnx`` runs like any ONNX card."""

    def factory(card: ModelCard, backend: str, device: str, num_threads: int, precision: str) -> DepthEstimator:
        if card.weights.suffix == ".onnx":
            return _onnx(card, backend, device, num_threads, precision)
        _require(card, backend, ("torch",))
        estimator = getattr(importlib.import_module(module), class_name)
        return estimator(card, device=device, precision=precision, num_threads=num_threads)

    return factory


def _tflite(card: ModelCard, backend: str, device: str, num_threads: int, precision: str) -> DepthEstimator:
    from depth_node.estimators.tflite_runner import TfliteEstimator

    _require(card, backend, ("tflite",))
    return TfliteEstimator(card, device=device, num_threads=num_threads)


FAMILIES: dict[str, Factory] = {
    "onnx": _onnx,
    "depth_anything_v2": _torch_family("depth_node.estimators.depth_anything", "DepthAnythingV2Estimator"),
    "tflite": _tflite,
    "diffusion": _torch_family("depth_node.estimators.diffusion", "DiffusionDepthEstimator"),
}


def load_estimator(
    card_path: str | Path, backend: str = "auto", device: str = "cpu", num_threads: int = 0, precision: str = "fp32"
) -> DepthEstimator:
    """Load the model a card describes; raises :class:`ModelLoadError` saying which file and what to do."""
    card = load_card(card_path)
    factory = FAMILIES.get(card.family)
    if factory is None:
        raise ModelLoadError(
            f"model card {card.path}: unknown family {card.family!r}; known families: {', '.join(sorted(FAMILIES))}"
        )
    return factory(card, backend, device, num_threads, precision)
