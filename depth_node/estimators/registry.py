"""Model family name → estimator factory, and the one function that turns a card into a running estimator.

``backend: auto`` picks the fastest runtime the weights and the machine allow: an ``.onnx`` file with a fixed input
runs as a cached native TensorRT engine when the device is a GPU and TensorRT is installed, else on ONNX Runtime;
a Hugging Face / diffusers folder on torch; a ``.tflite`` file on LiteRT. Each family imports its runtime lazily, so a missing
optional runtime only affects the cards that need it.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Callable

from depth_node.core.estimator import DepthEstimator
from depth_node.estimators.runtime import RuntimeOptions
from depth_node.core.parameters import parameter_default, parse_backend_list
from depth_node.errors import ModelLoadError
from depth_node.estimators.card import ModelCard, load_card
from depth_node.estimators.onnx_runner import OnnxEstimator
from depth_node.estimators.tensorrt_runner import TensorrtEstimator
from depth_node.estimators.tflite_runner import TfliteEstimator
from depth_node.paths import resolve_card

Factory = Callable[[ModelCard, str, str, RuntimeOptions], DepthEstimator]


def _require(card: ModelCard, backend: str, allowed: tuple[str, ...]) -> str:
    if backend == "auto":
        return allowed[0]
    if backend not in allowed:
        raise ModelLoadError(f"model card {card.path}: family {card.family!r} with these weights runs on {', '.join(allowed)}, not {backend!r}")
    return backend


def tensorrt_ready(card: ModelCard) -> bool:
    """TensorRT is installed, a CUDA GPU is visible and the card has the fixed input an engine needs."""
    if card.input.size is None or importlib.util.find_spec("tensorrt") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _onnx(card: ModelCard, backend: str, device: str, options: RuntimeOptions) -> DepthEstimator:
    chosen = _require(card, backend, ("onnxruntime", "tensorrt"))
    if backend == "auto" and device != "cpu" and tensorrt_ready(card):
        chosen = "tensorrt"  # the fastest runtime there is for a fixed-shape ONNX model on an NVIDIA GPU
    if chosen == "tensorrt":

        return TensorrtEstimator(card, precision=options.precision)

    return OnnxEstimator(card, device=device, num_threads=options.num_threads)


def _torch_family(module: str, class_name: str) -> Factory:
    """A family whose native weights run on torch and whose exported ``.onnx`` runs like any ONNX card."""

    def factory(card: ModelCard, backend: str, device: str, options: RuntimeOptions) -> DepthEstimator:
        if card.weights.suffix == ".onnx":
            return _onnx(card, backend, device, options)
        _require(card, backend, ("torch",))
        estimator = getattr(importlib.import_module(module), class_name)
        return estimator(card, device=device, options=options)

    return factory


def _tflite(card: ModelCard, backend: str, device: str, options: RuntimeOptions) -> DepthEstimator:

    _require(card, backend, ("tflite",))
    return TfliteEstimator(card, device=device, num_threads=options.num_threads)


FAMILIES: dict[str, Factory] = {
    "onnx": _onnx,
    "depth_anything_v2": _torch_family("depth_node.estimators.depth_anything", "DepthAnythingV2Estimator"),
    "tflite": _tflite,
    "diffusion": _torch_family("depth_node.estimators.diffusion", "DiffusionDepthEstimator"),
}


def load_estimator(
    card_path: str | Path, backend: str | None = None, device: str | None = None, num_threads: int | None = None,
    precision: str | None = None, compile_mode: str | None = None, channels_last: bool | None = None,
) -> DepthEstimator:
    """Load the model a card describes on ``backend``/``device`` with those runtime options (None: the parameter's
    default); raises :class:`ModelLoadError` saying which file and what to do."""
    card = load_card(card_path)
    factory = FAMILIES.get(card.family)
    if factory is None:
        raise ModelLoadError(
            f"model card {card.path}: unknown family {card.family!r}; known families: {', '.join(sorted(FAMILIES))}"
        )
    given = {"num_threads": num_threads, "precision": precision, "compile_mode": compile_mode, "channels_last": channels_last}
    options = RuntimeOptions(**{k: v for k, v in given.items() if v is not None})
    return factory(card, parameter_default("backend") if backend is None else backend,
                   parameter_default("device") if device is None else device, options)


def backend_attempts(config: Any) -> list[tuple[str, str]]:
    """(backend, device) in the order the node tries them: the parameters', then each ``backend_fallback`` entry
    (``config``: a :class:`~depth_node.core.parameters.PipelineConfig`)."""
    return [(config.backend, config.device)] + [
        (b, d or config.device) for b, d in parse_backend_list(config.backend_fallback)]


def load_model(config: Any, start: int = 0) -> tuple[DepthEstimator, list[str], int]:
    """The model the parameters name, on the first of :func:`backend_attempts` from index ``start`` that loads;
    returns (estimator, why each earlier attempt failed, the index used). Raises :class:`ModelLoadError` when
    all fail."""
    card = resolve_card(config.model_card)
    failures = []
    for index, (backend, device) in enumerate(backend_attempts(config)):
        if index < start:
            continue
        try:
            estimator = load_estimator(card, backend, device, config.num_threads, config.precision,
                                       config.torch_compile, config.channels_last)
            return estimator, failures, index
        except ModelLoadError as exc:
            failures.append(f"{backend}:{device}: {exc}")
    if not failures:
        raise ModelLoadError("no backend_fallback entry left to try")
    raise ModelLoadError(failures[0] if len(failures) == 1 else "every backend failed — " + " | ".join(failures))
