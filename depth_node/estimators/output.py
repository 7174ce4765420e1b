"""A runtime's raw output array → prediction values: one image, float32, × the card's ``output.unit_scale``."""

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
