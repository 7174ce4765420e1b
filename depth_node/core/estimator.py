"""The estimator protocol every model family implements, and the runtime choices a node can ask for.

An estimator turns an RGB image into a :class:`Prediction` in the model's *own* output space and knows
nothing about scale, confidence thresholds or point clouds. Two steps, timed separately by the pipeline:
``preprocess`` (resize to the model's input rules, normalize, move to the device) and ``infer`` (the forward
pass and the copy back to a float32 array on the model's output grid).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from depth_node.core.spaces import Invariance, OutputSpace

# The runtime choices (parameters ``backend``, ``device``, ``precision``, ``torch_compile``), declared once here.
BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch", "tflite")
DEVICES = ("cpu", "cuda", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class OutputSpec:
    """What a model's output means: its space and invariance, and a unit scale (raw value × unit_scale)."""

    space: OutputSpace
    invariance: Invariance
    unit_scale: float = 1.0

    def describe(self) -> str:
        return f"{self.invariance.value} {self.space.value}"


@dataclass
class Prediction:
    """One forward pass.

    values:     float32 (h, w) in ``spec.space`` on the model's output grid, already × ``spec.unit_scale``;
                aligned with the input image (same field of view, any resolution).
    spec:       what the values mean.
    confidence: float32 (h, w) in [0, 1] when the model has a confidence head, else None.
    """

    values: np.ndarray
    spec: OutputSpec
    confidence: np.ndarray | None = None


class DepthEstimator(ABC):
    """A loaded model, ready to run. Subclasses set ``card``, ``backend`` and ``device``, and ``precision`` where
    they honour a requested one (ONNX Runtime and LiteRT run the graph as it was exported)."""

    card: Any
    backend: str
    device: str
    precision: str = "fp32"
    # test-time augmentation: the model input's long side × this (flexible-size models only; see ``input_rules``)
    input_scale: float = 1.0

    @property
    def name(self) -> str:
        return str(self.card.name)

    @property
    def output(self) -> OutputSpec:
        return self.card.output

    @property
    def _base_rules(self) -> Any:
        """The runtime's resolved input rules where it keeps them (``self.rules``), else the card's."""
        return getattr(self, "rules", None) or self.card.input

    @property
    def flexible_input(self) -> bool:
        """True when the input size follows a long-side rule (so ``input_scale`` can change it)."""
        rules = self._base_rules
        return rules.size is None and rules.long_side is not None

    @property
    def input_rules(self) -> Any:
        """The card's input rules (or the runtime's static ones), with ``input_scale`` applied to the long side."""
        rules = self._base_rules
        if self.input_scale == 1.0:
            return rules
        if not self.flexible_input:
            raise ValueError(f"model '{self.name}' takes a fixed input size; test-time scales need a long-side rule in its card")
        return replace(rules, long_side=max(rules.multiple_of, round(rules.long_side * self.input_scale / rules.multiple_of) * rules.multiple_of))

    @contextmanager
    def scaled_input(self, scale: float) -> Iterator[None]:
        """``preprocess`` inside this block resizes to the input long side × ``scale`` (a test-time augmentation
        member); raises ValueError for a fixed-size model when ``scale`` is not 1."""
        self.input_scale = scale
        try:
            self.input_rules  # noqa: B018 -- raises now for a fixed-size model, not in the middle of a batch
            yield
        finally:
            self.input_scale = 1.0

    @property
    def stochastic(self) -> bool:
        """True when two passes over the same input differ (seeded noise): noise ensembling helps only then."""
        return False

    @property
    def multi_step(self) -> bool:
        """True for models that run several denoising steps per pass (Marigold): ``set_denoising_steps`` applies."""
        return False

    def set_denoising_steps(self, steps: int) -> None:
        """Denoising steps per pass (0 = the card's); only multi-step models take a non-zero value."""
        if steps:
            raise ValueError(f"denoising_steps applies to multi-step models (Marigold); '{self.name}' runs a single step: "
                             "set denoising_steps: 0")

    @abstractmethod
    def preprocess(self, rgb: np.ndarray) -> Any:
        """uint8 (H, W, 3) RGB → the model's input, in the runtime's own container."""

    @abstractmethod
    def infer(self, model_input: Any) -> Prediction:
        """Forward pass of a ``preprocess`` result."""

    @staticmethod
    def same_size_batches(model_inputs: list[Any]) -> list[list[int]]:
        """Indices of ``model_inputs`` grouped by shape, in first-seen order: what can go through one batched pass."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, x in enumerate(model_inputs):
            groups.setdefault(tuple(x.shape), []).append(k)
        return list(groups.values())

    def infer_many(self, model_inputs: list[Any]) -> list[Prediction]:
        """Several forward passes (ensemble members); families that can batch them override this."""
        return [self.infer(x) for x in model_inputs]

    @classmethod
    def infer_in_batches(cls, model_inputs: list[Any], run_batch: Callable[[list[Any]], list[Prediction]]) -> list[Prediction]:
        """``run_batch`` once per group of same-size inputs (one batched pass each); the predictions in input order."""
        results: list[Any] = [None] * len(model_inputs)
        for picks in cls.same_size_batches(model_inputs):
            for k, prediction in zip(picks, run_batch([model_inputs[k] for k in picks])):
                results[k] = prediction
        return results

    def predict(self, rgb: np.ndarray) -> Prediction:
        """``infer(preprocess(rgb))``."""
        return self.infer(self.preprocess(rgb))
