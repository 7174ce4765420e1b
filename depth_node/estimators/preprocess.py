"""Camera image → model input array, by a card's :class:`InputRules` (numpy, runtime-agnostic)."""

from __future__ import annotations

import cv2
import numpy as np

from depth_node.estimators.card import InputRules

_CV_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def resize_image(rgb: np.ndarray, height: int, width: int, interpolation: str = "area") -> np.ndarray:
    """Resize an (H, W, C) image; ``area`` is used only when shrinking (it is nearest-like when enlarging)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    flag = _CV_INTERPOLATION[interpolation]
    if flag == cv2.INTER_AREA and (height > rgb.shape[0] or width > rgb.shape[1]):
        flag = cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, height), interpolation=flag)


def to_model_input(rgb: np.ndarray, rules: InputRules) -> np.ndarray:
    """uint8 (H, W, 3) RGB → batch of one in the card's layout and dtype (resized, ordered, normalized)."""
    height, width = rules.target_size(rgb.shape[0], rgb.shape[1])
    image = resize_image(rgb, height, width, rules.interpolation)
    if rules.channels == "bgr":
        image = image[..., ::-1]
    if rules.dtype == "uint8":
        tensor = np.ascontiguousarray(image)
    else:
        # (x·scale − mean) / std folded into one multiply-add per channel.
        std = np.asarray(rules.std, np.float32)
        gain = np.float32(rules.scale) / std
        offset = -np.asarray(rules.mean, np.float32) / std
        tensor = image.astype(np.float32) * gain + offset
        if rules.dtype == "float16":
            tensor = tensor.astype(np.float16)
    if rules.layout == "nchw":
        tensor = tensor.transpose(2, 0, 1)
    return np.ascontiguousarray(tensor[None])
