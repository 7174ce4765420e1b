"""A runtime's raw output arrays → prediction values (one image, float32, × the card's ``output.unit_scale``) and,
when the card names one, the model's own confidence (clipped to [0, 1]; NaN stays NaN: the pipeline publishes 0 there
and reports how much)."""

from __future__ import annotations

import numpy as np

from depth_node.errors import ModelLoadError
from depth_node.estimators.card import ModelCard


def as_image(array: np.ndarray, what: str) -> np.ndarray:
    """Squeeze (1, 1, H, W), (1, H, W), (H, W) or (1, H, W, 1) to (H, W); anything else is an error naming ``what``."""
    squeezed = np.squeeze(array)
    if squeezed.ndim != 2:
        raise ModelLoadError(f"{what} has shape {list(array.shape)}; expected one image, e.g. (1, 1, H, W)")
    return squeezed


def prediction_values(raw: np.ndarray, card: ModelCard) -> np.ndarray:
    """The prediction array of ``card``'s model as float32 (H, W) in its output space, unit scale applied."""
    values = as_image(raw, f"{card.name} output {card.output_index}").astype(np.float32, copy=False)
    if card.output.unit_scale != 1.0:
        values = values * np.float32(card.output.unit_scale)
    return values


def confidence_values(outputs: list[np.ndarray], card: ModelCard) -> np.ndarray | None:
    """The confidence head's output of ``card``'s model as float32 (H, W) in [0, 1], or None when it has none."""
    if card.confidence_index is None:
        return None
    if card.confidence_index >= len(outputs):
        raise ModelLoadError(f"{card.name}: output.confidence_index {card.confidence_index} but the model has {len(outputs)} output(s)")
    confidence = as_image(outputs[card.confidence_index], f"{card.name} confidence output")
    return np.clip(confidence.astype(np.float32, copy=False), 0.0, 1.0)
