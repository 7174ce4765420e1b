"""Native TensorRT estimator for ONNX cards: engine built once per (model, precision, shape, TensorRT, GPU) and
cached (see :mod:`depth_node.backends.tensorrt_engine`); preprocessing on the GPU, one copy back per frame."""

from __future__ import annotations

from typing import Any

import numpy as np

from depth_node.backends.tensorrt_engine import (
    DEFAULT_CACHE,
    EngineCache,
    TensorrtRunner,
    build_engine,
    engine_key,
    import_tensorrt,
)
from depth_node.backends.torch_backend import rules_to_tensor, torch_device
from depth_node.core.estimator import DepthEstimator, Prediction
from depth_node.errors import ModelLoadError
from depth_node.estimators.card import ModelCard
from depth_node.estimators.output import confidence_values, prediction_values


class TensorrtEstimator(DepthEstimator):
    backend = "tensorrt"

    def __init__(self, card: ModelCard, precision: str, cache_dir: Any = None) -> None:
        import torch

        if card.weights.suffix != ".onnx" or not card.weights.is_file():
            raise ModelLoadError(f"TensorRT builds engines from an .onnx file; {card.weights} is not one (model card {card.path})")
        if card.input.size is None:
            raise ModelLoadError(
                f"model card {card.path}: a TensorRT engine has a fixed input: set input.size [height, width] "
                "(depth-node export writes it)"
            )
        if card.input.layout != "nchw" or card.input.dtype == "uint8":
            raise ModelLoadError(f"model card {card.path}: the TensorRT backend takes float NCHW inputs")
        import_tensorrt()  # a clear error before anything else when TensorRT is absent
        if not torch.cuda.is_available():
            raise ModelLoadError("the TensorRT backend needs a CUDA GPU, and torch sees none: use backend onnxruntime or torch on this machine")
        self._device = torch_device("cuda")
        self.card, self.device = card, "cuda"
        self.precision = "fp16" if precision in ("fp16", "bf16") else "fp32"
        shape = (1, 3, *card.input.size)
        key = engine_key(card.weights, self.precision, shape)
        cache = EngineCache(cache_dir or DEFAULT_CACHE)
        data, self.load_info = cache.get_or_build(card.name, key, lambda: build_engine(card.weights, self.precision, shape))
        self.runner = TensorrtRunner(data)

    def preprocess(self, rgb: np.ndarray) -> Any:
        import torch

        return rules_to_tensor(rgb, self.input_rules, self._device, torch.float32)

    def infer(self, model_input: Any) -> Prediction:
        outputs = self.runner(model_input)
        wanted = {self.card.output_index, self.card.confidence_index}  # copy to the host only what is read
        arrays = [output.float().cpu().numpy() if n in wanted else np.empty(0, np.float32) for n, output in enumerate(outputs)]
        return Prediction(prediction_values(arrays[self.card.output_index], self.card), self.card.output, confidence_values(arrays, self.card))
