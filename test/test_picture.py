"""The demo / report picture: what each panel shows."""

from __future__ import annotations

import numpy as np

from depth_node.eval.picture import cloud_view, confidence_grey, four_panel


def test_a_narrow_confidence_range_is_stretched_to_black_and_white() -> None:
    confidence = np.tile(np.linspace(0.05, 0.15, 200, dtype=np.float32), (100, 1))  # a learnt head on a real room
    grey, lo, hi = confidence_grey(confidence)
    assert 0.05 < lo < 0.06 and 0.14 < hi < 0.15
    assert grey[:, 0].max() == 0 and grey[:, -1].min() == 255
    assert (np.diff(grey[0].astype(int)) >= 0).all()  # order kept


def test_a_nearly_constant_confidence_is_shown_on_zero_to_one_and_nan_is_black() -> None:
    confidence = np.full((50, 60), 0.5, np.float32)
    confidence[:, :10] = np.nan
    grey, lo, hi = confidence_grey(confidence)
    assert (lo, hi) == (0.0, 1.0)
    assert (grey[:, :10] == 0).all() and (np.abs(grey[:, 10:].astype(int) - 127) <= 1).all()
    all_nan, lo, hi = confidence_grey(np.full((4, 4), np.nan, np.float32))
    assert (all_nan == 0).all() and (lo, hi) == (0.0, 1.0)


def test_four_panels_side_by_side_with_the_confidence_visible() -> None:
    h, w = 120, 160
    rgb = np.full((h, w, 3), 90, np.uint8)
    depth = np.tile(np.linspace(1.0, 4.0, w, dtype=np.float32), (h, 1))
    confidence = np.tile(np.linspace(0.02, 0.2, w, dtype=np.float32), (h, 1))
    v, u = np.mgrid[0:h, 0:w]
    points = np.stack([(u - 80) / 100 * depth, (v - 60) / 100 * depth, depth], axis=-1).astype(np.float32)
    strip = four_panel(rgb, depth, confidence, points, panel_height=h)
    assert strip.shape == (h, 4 * w, 3)
    panel = strip[40:, 2 * w:3 * w, 0]  # below the label
    assert panel[:, :5].max() < 20 and panel[:, -5:].min() > 235


def test_the_cloud_view_draws_a_plane_and_an_empty_cloud_gives_the_background() -> None:
    h, w = 60, 80
    v, u = np.mgrid[0:h, 0:w]
    z = np.full((h, w), 2.0)
    plane = np.stack([(u - 40) / 50 * z, (v - 30) / 50 * z, z], axis=-1).astype(np.float32)
    view = cloud_view(plane, 120, 90)
    assert (view != 24).any(axis=2).mean() > 0.05
    empty = cloud_view(np.full((h, w, 3), np.nan, np.float32), 120, 90)
    assert (empty == 24).all()


def test_a_label_is_white_text_on_a_black_box_that_holds_it() -> None:
    """The panel label: a black box sized by cv2.getTextSize, the text drawn once in white inside it, the rest of the
    panel untouched."""
    import cv2

    from depth_node.eval.picture import LABEL_FONT, LABEL_PAD, LABEL_SCALE, label_panel

    panel = np.full((120, 300, 3), 200, np.uint8)
    text = "depth 0.4-3.2 m"
    out = label_panel(panel, text)
    (width, height), baseline = cv2.getTextSize(text, LABEL_FONT, LABEL_SCALE, 1)
    box = out[:height + baseline + 2 * LABEL_PAD, :width + 2 * LABEL_PAD]
    inked = box.max(axis=2) > 128
    assert 0.05 < inked.mean() < 0.6                                  # white strokes on black, nothing else in the box
    assert set(np.unique(box[~inked])) <= set(range(0, 129))          # the background is black (anti-aliased edges grey)
    cols = np.flatnonzero(inked.any(axis=0))
    assert cols[0] >= LABEL_PAD - 1 and cols[-1] <= width + LABEL_PAD  # the text fits its box from start to end
    assert (out[height + baseline + 2 * LABEL_PAD:] == 200).all() and (out[:, width + 2 * LABEL_PAD:] == 200).all()
    assert (panel == 200).all()                                        # the input panel is not drawn on
