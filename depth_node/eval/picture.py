"""One picture of what the node published for a frame: RGB | depth | confidence | the point cloud seen from aside.

The cloud view re-projects the organized cloud (x, y, z, packed rgb; optical frame) into a virtual camera that
orbits the scene's median point by ``yaw_deg`` and looks down by ``pitch_deg``, with a z-buffer (nearest point
wins) and 2×2 splats so gaps between pixels do not show: the 3-D shape is visible, not only the depth colours.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from depth_node.core.cloud import unpack_rgb
from depth_node.core.colorize import colorize_depth, display_range


def cloud_view(points: np.ndarray, width: int, height: int, yaw_deg: float = -35.0, pitch_deg: float = 20.0,
               hfov_deg: float = 70.0) -> np.ndarray:
    """uint8 (height, width, 3) RGB rendering of an organized cloud (h, w, 3 | 4) from an orbiting viewpoint."""
    xyz = points[..., :3].reshape(-1, 3).astype(np.float64)
    valid = np.isfinite(xyz).all(axis=1)
    canvas = np.full((height, width, 3), 24, np.uint8)
    if valid.sum() < 10:
        return canvas
    colour = unpack_rgb(points[..., 3].reshape(-1))[valid] if points.shape[-1] == 4 else None
    xyz = xyz[valid]
    pivot = np.median(xyz, axis=0)
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    distance = float(np.linalg.norm(pivot)) * 1.6 + 1.0  # back off so the whole cloud is in view
    view = (xyz - pivot) @ (rx @ ry).T + np.array([0.0, 0.0, distance])
    in_front = view[:, 2] > 0.05
    view = view[in_front]
    depth = view[:, 2]
    if colour is None:  # an xyz-only cloud: colour by range
        z = xyz[in_front, 2].astype(np.float32)[:, None]
        colour = colorize_depth(z, *display_range(z))[:, 0]
    else:
        colour = colour[in_front]
    f = width / (2 * math.tan(math.radians(hfov_deg) / 2))
    u = np.round(view[:, 0] / depth * f + width / 2).astype(np.int64)
    v = np.round(view[:, 1] / depth * f + height / 2).astype(np.int64)
    order = np.argsort(-depth)  # far first, so nearer points overwrite them
    u, v, colour = u[order], v[order], colour[order]
    for du in (0, 1):
        for dv in (0, 1):
            uu, vv = u + du, v + dv
            inside = (uu >= 0) & (uu < width) & (vv >= 0) & (vv < height)
            canvas[vv[inside], uu[inside]] = colour[inside]
    return canvas


LABEL_FONT, LABEL_SCALE, LABEL_PAD = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 4


def label_panel(image: np.ndarray, text: str) -> np.ndarray:
    """``text`` in white on a black box sized by the text itself, top left: readable on any panel. (Black text at a
    heavier weight under white drifts apart from it along the string: the two strokes are laid out differently.)"""
    out = np.ascontiguousarray(image).copy()
    (width, height), baseline = cv2.getTextSize(text, LABEL_FONT, LABEL_SCALE, 1)
    right, bottom = min(out.shape[1], width + 2 * LABEL_PAD), min(out.shape[0], height + baseline + 2 * LABEL_PAD)
    out[:bottom, :right] = 0
    cv2.putText(out, text, (LABEL_PAD, LABEL_PAD + height), LABEL_FONT, LABEL_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def colour_bar(width: int, lo: float, hi: float, colormap: str, unit: str, height: int = 30) -> np.ndarray:
    """uint8 RGB key of a colour map for a panel ``width`` wide: the colours from ``lo`` to ``hi`` above, their
    values (start, middle, end, with ``unit``) in black below, on white."""
    bar = np.full((height, width, 3), 255, np.uint8)
    ramp = np.linspace(lo, hi, width, dtype=np.float32)[None, :].repeat(10, axis=0)
    bar[2:12] = colorize_depth(ramp, lo, hi, colormap)
    for fraction, anchor in ((0.0, 0.0), (0.5, 0.5), (1.0, 1.0)):
        value = lo + fraction * (hi - lo)
        text = f"{value:.3g}{unit}"
        (text_width, text_height), _ = cv2.getTextSize(text, LABEL_FONT, 0.4, 1)
        x = int(round(fraction * (width - 1) - anchor * text_width))
        cv2.putText(bar, text, (max(2, min(width - text_width - 2, x)), 14 + text_height), LABEL_FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def confidence_grey(confidence: np.ndarray) -> tuple[np.ndarray, float, float]:
    """uint8 grey of a [0, 1] confidence, stretched to its 2–98 % range (a learnt head publishes mostly 0.02–0.3 on
    real rooms, which on a 0–1 scale is a black picture); a confidence that barely varies is shown on 0–1. NaN →
    black. Returns (grey, lo, hi): the values that map to black and white."""
    finite = confidence[np.isfinite(confidence)]
    lo, hi = (float(v) for v in np.percentile(finite, [2.0, 98.0])) if finite.size else (0.0, 1.0)
    if hi - lo < 0.02:
        lo, hi = 0.0, 1.0
    grey = np.clip((np.nan_to_num(confidence, nan=lo) - lo) / (hi - lo), 0.0, 1.0) * 255.0
    return np.where(np.isfinite(confidence), grey, 0.0).astype(np.uint8), lo, hi


def four_panel(rgb: np.ndarray, depth_m: np.ndarray, confidence: np.ndarray | None, points: np.ndarray | None,
               panel_height: int = 240) -> np.ndarray:
    """uint8 RGB strip: RGB | depth (turbo, 2–98 % range, black = invalid) | confidence (grey, its 2–98 % range
    black … white, the range in the label; black = NaN) | cloud."""
    width = int(round(rgb.shape[1] * panel_height / rgb.shape[0]))

    def fit(image: np.ndarray, nearest: bool = False) -> np.ndarray:
        return cv2.resize(image, (width, panel_height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)

    lo, hi = display_range(depth_m)
    panels = [label_panel(fit(rgb), "RGB"), label_panel(fit(colorize_depth(depth_m, lo, hi), True), f"depth {lo:.1f}-{hi:.1f} m")]
    if confidence is not None:
        grey, c_lo, c_hi = confidence_grey(confidence)
        panels.append(label_panel(fit(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)), f"confidence {c_lo:.2f}-{c_hi:.2f}"))
    if points is not None:
        panels.append(label_panel(cloud_view(points, width, panel_height), "point cloud (side view)"))
    return np.concatenate(panels, axis=1)
