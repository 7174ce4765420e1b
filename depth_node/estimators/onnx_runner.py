"""Generic ONNX Runtime estimator: any exported depth network, described by a model card.

The network takes one image tensor (layout, dtype and normalization from the card) and returns the prediction
as its ``output.index``-th output, shaped (1, 1, h, w), (1, h, w), (h, w) or (1, h, w, 1) on a grid covering
the same field of view as its input.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from depth_node.backends.torch_backend import rules_to_tensor
from depth_node.core.estimator import DepthEstimator, Prediction
from depth_node.errors import ModelLoadError
from depth_node.estimators.card import ModelCard
from depth_node.estimators.output import confidence_values, prediction_values
from depth_node.estimators.preprocess import to_model_input

# device name → execution providers to ask for, best first (CPU always last as the runtime's own fallback).
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxEstimator(DepthEstimator):
    """Runs ``card.weights`` (an .onnx file) with ONNX Runtime."""

    backend = "onnxruntime"

    def __init__(self, card: ModelCard, device: str, num_threads: int) -> None:
        import onnxruntime as ort

        self.card = card
        if device not in _PROVIDERS:
            raise ModelLoadError(f"onnxruntime device must be one of {sorted(_PROVIDERS)}, got {device!r}")
        available = set(ort.get_available_providers())
        wanted = _PROVIDERS[device]
        if wanted[0] not in available:
            raise ModelLoadError(
                f"{wanted[0]} is not available in this onnxruntime build (has: {sorted(available)}); "
                "set device: cpu, or install onnxruntime-gpu"
            )
        if not card.weights.is_file():
            raise ModelLoadError(
                f"weights file not found: {card.weights} (model card {card.path}). Put the file there, "
                "or fix the card's 'weights' key."
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads > 0:
            options.intra_op_num_threads = num_threads
        # ONNX Runtime's pool threads spin for a while after each run, on the cores the frame's other stages, the
        # middleware and the subscribers need next: without it, receive->publish p95 at 640x480 with every output
        # went 18.6-22.8 -> 13.6-16.0 ms over four alternated pairs (docs/benchmarks.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(card.weights), sess_options=options, providers=[p for p in wanted if p in available]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors (InvalidProtobuf, Fail, ...)
            raise ModelLoadError(
                f"onnxruntime could not load {card.weights} (model card {card.path}): {str(exc).strip()[:300]}. "
                "The file may be truncated or not an ONNX model: export it again."
            ) from None
        self.device = device
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"{card.weights}: expected one image input, the model has {len(inputs)}")
        self._input_name = inputs[0].name
        self._batchable = not isinstance(inputs[0].shape[0], int)  # a symbolic batch axis: members in one run
        self._outputs = [o.name for o in self.session.get_outputs()]
        if card.output_index >= len(self._outputs):
            raise ModelLoadError(
                f"model card {card.path}: output.index {card.output_index} but the model has "
                f"{len(self._outputs)} output(s)"
            )
        self.rules = card.input
        if self.rules.size is None and self.rules.long_side is None:
            self.rules = self._static_size(inputs[0].shape)
        # On a GPU provider, preprocess on the GPU and bind the CUDA tensor: no host round trip on the hot path.
        self._cuda = None
        if device != "cpu" and self.rules.layout == "nchw" and self.rules.dtype == "float32":
            try:
                import torch

                if torch.cuda.is_available():
                    self._cuda = torch.device("cuda")
            except ImportError:
                pass

    def _static_size(self, shape: list[Any]) -> Any:

        if len(shape) == 4:
            h, w = (shape[2], shape[3]) if self.card.input.layout == "nchw" else (shape[1], shape[2])
            if isinstance(h, int) and isinstance(w, int):
                return replace(self.card.input, size=(h, w))
        return self.card.input  # fully dynamic: fed at the camera's own resolution

    def preprocess(self, rgb: np.ndarray) -> Any:
        if self._cuda is not None:
            import torch


            return rules_to_tensor(rgb, self.input_rules, self._cuda, torch.float32)
        return to_model_input(rgb, self.input_rules)

    def _run_bound(self, x: Any) -> list[np.ndarray]:
        """Run with the input bound in GPU memory (IO binding); only the outputs come back to the host."""
        x = x.contiguous()
        binding = self.session.io_binding()
        binding.bind_input(self._input_name, "cuda", x.device.index or 0, np.float32, tuple(x.shape), x.data_ptr())
        for name in self._outputs:
            binding.bind_output(name, "cuda")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def infer_many(self, model_inputs: list[Any]) -> list[Prediction]:
        """Members of the same input size in one run when the graph's batch axis is dynamic (CPU inputs)."""
        if not self._batchable or not all(isinstance(x, np.ndarray) for x in model_inputs):
            return super().infer_many(model_inputs)

        def run_batch(batch: list[np.ndarray]) -> list[Prediction]:
            outputs = self.session.run(None, {self._input_name: np.concatenate(batch)})
            return [self._prediction([o[n:n + 1] for o in outputs]) for n in range(len(batch))]

        return self.infer_in_batches(model_inputs, run_batch)

    def infer(self, model_input: Any) -> Prediction:
        if isinstance(model_input, np.ndarray):
            outputs = self.session.run(None, {self._input_name: model_input})
        else:
            outputs = self._run_bound(model_input)
        return self._prediction(outputs)

    def _prediction(self, outputs: list[np.ndarray]) -> Prediction:
        values = prediction_values(outputs[self.card.output_index], self.card)
        return Prediction(values, self.card.output, confidence_values(outputs, self.card))
