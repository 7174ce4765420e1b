"""TFLite (LiteRT) estimator: quantized edge models such as FastDepth, run by ``ai_edge_litert``.

Quantized outputs are dequantized with the tensor's own (scale, zero point) before the card's ``unit_scale``.
The input size defaults to the model's static input shape; ``input.dtype: uint8`` feeds raw pixels.
Ensemble members of one size go through one invocation: the input tensor is resized to the batch (LiteRT then
re-plans its buffers, once per new batch size) and back to 1 for single frames.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from depth_node.core.estimator import DepthEstimator, Prediction
from depth_node.errors import ModelLoadError
from depth_node.estimators.card import ModelCard
from depth_node.estimators.output import prediction_values
from depth_node.estimators.preprocess import to_model_input


class TfliteEstimator(DepthEstimator):
    backend = "tflite"

    def __init__(self, card: ModelCard, device: str, num_threads: int) -> None:
        if device != "cpu":
            raise ModelLoadError(f"the tflite family runs on the CPU only, not {device!r}")
        if not card.weights.is_file():
            raise ModelLoadError(f"weights file not found: {card.weights} (model card {card.path}). Put the file there, or fix 'weights'.")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ModelLoadError("the tflite family needs the ai-edge-litert package: pip install ai-edge-litert") from None
        try:
            self.interpreter = Interpreter(model_path=str(card.weights), num_threads=num_threads or None)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"LiteRT could not load {card.weights} (model card {card.path}): {exc}") from None
        self.card, self.device = card, device
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[card.output_index]
        shape = [int(v) for v in self._input["shape"]]
        layout_hw = (shape[1], shape[2]) if card.input.layout == "nhwc" else (shape[2], shape[3])
        self.rules = card.input if card.input.size else replace(card.input, size=layout_hw)
        if np.dtype(self._input["dtype"]) != np.dtype(self.rules.dtype):
            raise ModelLoadError(
                f"model card {card.path}: input.dtype is {self.rules.dtype} but the model takes {np.dtype(self._input['dtype'])}"
            )

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        return to_model_input(rgb, self.input_rules)

    def infer(self, model_input: np.ndarray) -> Prediction:
        return self._prediction(self._run(model_input))

    def infer_many(self, model_inputs: list[np.ndarray]) -> list[Prediction]:
        """Members of the same input size in one invocation (batch axis resized; outputs equal single passes)."""

        def run_batch(batch: list[np.ndarray]) -> list[Prediction]:
            raw = self._run(np.concatenate(batch))
            return [self._prediction(raw[n:n + 1]) for n in range(len(batch))]

        return self.infer_in_batches(model_inputs, run_batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if tuple(self._input["shape"]) != batch.shape:
            self.interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
            self.interpreter.allocate_tensors()
            self._input = self.interpreter.get_input_details()[0]
            self._output = self.interpreter.get_output_details()[self.card.output_index]
        self.interpreter.set_tensor(self._input["index"], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output["index"])

    def _prediction(self, raw: np.ndarray) -> Prediction:
        scale, zero_point = self._output["quantization"]
        dequantized = (raw.astype(np.float32) - zero_point) * np.float32(scale) if scale else raw
        return Prediction(prediction_values(dequantized, self.card), self.card.output)
