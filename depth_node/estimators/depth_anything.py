"""Depth Anything V2 (Small/Base/Large, relative and metric) from a local Hugging Face folder, on torch.

Output spaces (state them in the card, they are checked against the model's config at load):
- relative checkpoints predict **affine-invariant disparity** (larger = nearer);
- metric checkpoints (``depth_estimation_type: metric``; Hypersim indoor max 20 m, VKITTI outdoor max 80 m)
  predict **metric depth** in metres.
Input: aspect-preserving resize so the long side ≈ ``input.long_side`` (518 for the released checkpoints), both
sides multiples of 14, ImageNet mean/std; the prediction comes back on that grid and the pipeline resizes it to
the camera's. An ``.onnx`` weights file runs the same card on ONNX Runtime instead (see ``depth-node export``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from depth_node.backends.torch_backend import prepare_module, rules_to_tensor
from depth_node.core.estimator import DepthEstimator, Prediction
from depth_node.estimators.runtime import RuntimeOptions
from depth_node.core.spaces import Invariance, OutputSpace
from depth_node.errors import ModelLoadError
from depth_node.estimators.card import ModelCard
from depth_node.estimators.output import prediction_values


def check_output_spec(card: ModelCard, estimation_type: str) -> None:
    """The card's output space must be what the checkpoint really predicts."""
    expected = (OutputSpace.DEPTH, Invariance.METRIC) if estimation_type == "metric" else (OutputSpace.DISPARITY, Invariance.AFFINE)
    got = (card.output.space, card.output.invariance)
    if got != expected:
        raise ModelLoadError(
            f"model card {card.path}: the checkpoint is a {estimation_type} Depth Anything model, which outputs "
            f"{expected[1].value} {expected[0].value}, but the card says {got[1].value} {got[0].value}: fix 'output'"
        )


class DepthAnythingV2Estimator(DepthEstimator):
    """transformers' ``DepthAnythingForDepthEstimation`` loaded offline from ``card.weights`` (a folder)."""

    backend = "torch"

    def __init__(self, card: ModelCard, device: str, options: RuntimeOptions) -> None:
        import torch

        folder = card.weights
        if not (folder / "config.json").is_file():
            hint = f" (depth-node models download {card.name})" if card.extra.get("hf_repo") else ""
            raise ModelLoadError(
                f"Depth Anything weights not found: {folder} has no config.json (model card {card.path}). "
                f"Download the Hugging Face folder there{hint}, or point 'weights' at it."
            )
        from transformers import DepthAnythingForDepthEstimation

        try:
            model = DepthAnythingForDepthEstimation.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - SafetensorError, UnpicklingError, OSError, ...: all mean broken files
            message = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ModelLoadError(f"transformers could not load {folder} (model card {card.path}): {type(exc).__name__}: "
                                 f"{message}; the weights are damaged or not this model's: download them again") from None
        check_output_spec(card, getattr(model.config, "depth_estimation_type", "relative") or "relative")
        if options.num_threads > 0:
            torch.set_num_threads(options.num_threads)
        self.card = card
        self.model, self._device, self._dtype = prepare_module(
            model, device, options.precision, channels_last=options.channels_last, compile_mode=options.compile_mode
        )
        self.device = device
        self.precision = options.precision
        if card.input.long_side is None and card.input.size is None:
            raise ModelLoadError(f"model card {card.path}: Depth Anything needs input.long_side (518 for released weights)")

    def export_module(self) -> Any:
        """A torch module: preprocessed image tensor → (1, h, w) prediction (for ``depth-node export``)."""
        import torch

        model = self.model

        class PredictedDepth(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, image: torch.Tensor) -> torch.Tensor:
                return self.model(pixel_values=image).predicted_depth

        return PredictedDepth().eval()

    def preprocess(self, rgb: np.ndarray) -> Any:
        return rules_to_tensor(rgb, self.input_rules, self._device, self._dtype)

    def infer(self, model_input: Any) -> Prediction:
        return self.infer_many([model_input])[0]

    def infer_many(self, model_inputs: list[Any]) -> list[Prediction]:
        """Members of the same input size in one batched forward pass."""
        import torch

        def run_batch(batch: list[Any]) -> list[Prediction]:
            with torch.inference_mode():
                predicted = self.model(pixel_values=torch.cat(batch)).predicted_depth.float().cpu().numpy()
            return [Prediction(prediction_values(predicted[n:n + 1], self.card), self.card.output) for n in range(len(batch))]

        return self.infer_in_batches(model_inputs, run_batch)
