"""Camera image → model input array, by a card's :class:`InputRules` (numpy, runtime-agnostic).

Speed: OpenCV's area resize by a non-integer factor (640×480 → 224×224, or the tests' 96×72) takes ~1 ms at 640×480
and ~2.7 ms at 1280×720 on one core: OpenCV parallelizes it only for outputs over 64 K pixels. It is cut into
row bands resized at once on the cores (``core.parallel``), each band equal, bit for bit, to those rows of the
whole resize — so the model sees the same input. That holds where a band starts on a source row that is a whole
number (a multiple of ``src / gcd(src, dst)``) and OpenCV's area weights for the band's rows come out identical to
the whole image's: :func:`area_bands` computes both weight tables the way OpenCV does (``computeResizeAreaTab`` in
imgproc/resize.cpp: cell edges in double precision, weights rounded to float) and splits only where they agree;
test_estimators.py holds the bands to the whole resize on random images.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np

from depth_node.core.parallel import MIN_PIXELS, THREADS, together
from depth_node.estimators.card import InputRules

_CV_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def resize_image(rgb: np.ndarray, height: int, width: int, interpolation: str = "area") -> np.ndarray:
    """Resize an (H, W, C) image; ``area`` is used only when shrinking (it is nearest-like when enlarging)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    flag = _CV_INTERPOLATION[interpolation]
    if flag == cv2.INTER_AREA and (height > rgb.shape[0] or width > rgb.shape[1]):
        flag = cv2.INTER_LINEAR
    if flag != cv2.INTER_AREA:
        return cv2.resize(rgb, (width, height), interpolation=flag)
    edges = area_bands(rgb.shape[0], height, rgb.shape[1], width)
    if len(edges) == 2:
        return cv2.resize(rgb, (width, height), interpolation=flag)
    out = np.empty((height, width) + rgb.shape[2:], rgb.dtype)

    def band(first: int, last: int) -> None:  # output rows [first, last) from their whole source rows, written into out
        source = rgb[first * rgb.shape[0] // height:last * rgb.shape[0] // height]
        cv2.resize(source, (width, last - first), dst=out[first:last], interpolation=flag)

    together([lambda first=first, last=last: band(first, last) for first, last in zip(edges, edges[1:])])
    return out


@lru_cache(maxsize=64)
def area_bands(src_rows: int, dst_rows: int, src_cols: int, dst_cols: int) -> tuple[int, ...]:
    """Output row edges (``(0, dst_rows)``: one band) at which OpenCV's area resize of a ``src_cols`` × ``src_rows``
    image to ``dst_cols`` × ``dst_rows`` can be cut into row bands resized separately with the same result, bit for
    bit (see the module docstring): one band per thread, none under :data:`~depth_node.core.parallel.MIN_PIXELS`
    source pixels, none for whole factors both ways (OpenCV's exact fast path, ~10× cheaper)."""
    whole = (0, dst_rows)
    count = min(THREADS, src_rows * src_cols // MIN_PIXELS)
    if count < 2 or dst_rows < 2 or (src_rows % dst_rows == 0 and src_cols % dst_cols == 0):
        return whole
    period = dst_rows // math.gcd(src_rows, dst_rows)  # output rows between whole-numbered source rows
    cuts = sorted({round(dst_rows * k / count / period) * period for k in range(1, count)} - {0, dst_rows})
    if not cuts:
        return whole
    edges = (0, *cuts, dst_rows)
    scale = 1.0 / (dst_rows / src_rows)  # as OpenCV: 1 / (dsize / ssize), in double
    table = _area_table(src_rows, dst_rows, scale)
    for first, last in zip(edges, edges[1:]):
        start, stop = first * src_rows // dst_rows, last * src_rows // dst_rows
        if 1.0 / ((last - first) / (stop - start)) != scale:
            return whole
        if _area_table(stop - start, last - first, scale) != [
                (di - first, si - start, alpha) for di, si, alpha in table if first <= di < last]:
            return whole
    return edges


def _area_table(src_size: int, dst_size: int, scale: float) -> list[tuple[int, int, float]]:
    """OpenCV's area weights along one axis: (output index, source index, float32 weight), in its order."""
    table = []
    for d in range(dst_size):
        start = d * scale
        end = start + scale
        cell = min(scale, src_size - start)
        first, last = math.ceil(start), math.floor(end)
        last = min(last, src_size - 1)
        first = min(first, last)
        if first - start > 1e-3:
            table.append((d, first - 1, float(np.float32((first - start) / cell))))
        table.extend((d, s, float(np.float32(1.0 / cell))) for s in range(first, last))
        if end - last > 1e-3:
            table.append((d, last, float(np.float32(min(min(end - last, 1.0), cell) / cell))))
    return table


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
