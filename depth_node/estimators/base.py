"""The estimator interface every model family implements.

An estimator turns an RGB image into a :class:`Prediction` in the model's *own* output space and knows
nothing about scale, confidence thresholds or point clouds. Two steps, timed separately by the pipeline:
``preprocess`` (resize to the model's input rules, normalize, move to the device) and ``infer`` (the forward
pass and the copy back to a float32 array on the model's output grid).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from depth_node.core.spaces import Invariance, OutputSpace


COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run a model, whatever its family: CPU threads (0 = runtime default), numeric precision of torch
    models, ``torch.compile`` mode for them (``reduce-overhead`` captures CUDA graphs for the fixed shape), and
    channels-last memory format (faster convolutions on tensor-core GPUs)."""

    num_threads: int = 0
    precision: str = "fp32"
    compile_mode: str = "off"
    channels_last: bool = False


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

    @property
    def name(self) -> str:
        return str(self.card.name)

    @property
    def output(self) -> OutputSpec:
        return self.card.output

    @abstractmethod
    def preprocess(self, rgb: np.ndarray) -> Any:
        """uint8 (H, W, 3) RGB → the model's input, in the runtime's own container."""

    @abstractmethod
    def infer(self, model_input: Any) -> Prediction:
        """Forward pass of a ``preprocess`` result."""

    def predict(self, rgb: np.ndarray) -> Prediction:
        """``infer(preprocess(rgb))``."""
        return self.infer(self.preprocess(rgb))
