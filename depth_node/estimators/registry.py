"""Model family name → estimator class, and the one function that turns a card into a running estimator."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from depth_node.errors import ModelLoadError
from depth_node.estimators.base import DepthEstimator
from depth_node.estimators.card import ModelCard, load_card


def _onnx(card: ModelCard, backend: str, device: str, num_threads: int) -> DepthEstimator:
    from depth_node.estimators.onnx_runner import OnnxEstimator

    if backend not in ("onnxruntime", "auto"):
        raise ModelLoadError(f"family 'onnx' runs on backend 'onnxruntime', not {backend!r}")
    return OnnxEstimator(card, device=device, num_threads=num_threads)


# Each family imports its runtime lazily, so a missing optional runtime only affects cards that need it.
FAMILIES: dict[str, Callable[[ModelCard, str, str, int], DepthEstimator]] = {
    "onnx": _onnx,
}

BACKENDS = ("auto", "onnxruntime")


def load_estimator(card_path: str | Path, backend: str = "auto", device: str = "cpu", num_threads: int = 0) -> DepthEstimator:
    """Load the model a card describes; raises :class:`ModelLoadError` saying which file and what to do."""
    card = load_card(card_path)
    factory = FAMILIES.get(card.family)
    if factory is None:
        raise ModelLoadError(
            f"model card {card.path}: unknown family {card.family!r}; known families: {', '.join(sorted(FAMILIES))}"
        )
    return factory(card, backend, device, num_threads)
