"""Scale recovery (``scale.mode``): the (scale, shift) that turn a prediction into metres.

Every mode ends in a pair (s, t) applied in the model's *own* output space, then :func:`core.spaces.to_metres`
(depth d = s·p + t; disparity d = 1 / (s·p + t); sqrt-disparity d = 1 / (s·p + t)²). Fitting happens in that
space too, so an affine-invariant disparity model gets its shift, which no correction in metres could give.

``model``         s = 1, t = 0 for metric models; with ``reference_focal_px`` the prediction is rescaled by
                  f / f_ref (models trained at one focal length, Depth Anything 3 metric style).
``fixed``         s and t from parameters (a calibrated rig).
``ground_plane``  the camera's height above the floor is known (and optionally its pitch). Models whose shift is
                  known (metric, scale-invariant): the floor plane is fitted by RANSAC to the back-projected
                  prediction in an image region, and s puts the plane at the camera height. Affine models: the
                  known pitch and height give the floor's depth at every pixel below the horizon; s and t are
                  fitted to it robustly (RANSAC discards what is not floor).
``sparse``        a reference depth image (LiDAR projected into the camera, an RGB-D sensor; any resolution)
                  gives metres at some pixels; s (and t where the model's shift is unknown) are fitted by RANSAC
                  plus least squares on the inliers, in the output space.

:class:`ScaleTracker` smooths accepted fits in log space, rejects outliers and holds the last good scale while
no fit is possible (floor out of view, no reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from depth_node.core.camera import PinholeCamera, normalized_rays
from depth_node.core.cloud import backproject
from depth_node.core.least_squares import fit_scale, fit_scale_shift
from depth_node.core.spaces import Invariance, OutputSpace, from_metres, to_metres

SCALE_MODES = ("model", "fixed", "ground_plane", "sparse")
RANSAC_HYPOTHESES = 96
RANSAC_SAMPLE = 4096     # points scored per hypothesis (a random subset of larger sets)


@dataclass(frozen=True)
class ScaleFit:
    """One frame's fit. ``quality``: inlier ratio in [0, 1]; ``samples``: points the fit saw; ``ok``: usable."""

    scale: float = 1.0
    shift: float = 0.0
    quality: float = 0.0
    samples: int = 0
    ok: bool = False
    reason: str = ""     # why not ok


# ------------------------------------------------------------------------------------------- conversions
def shift_known(invariance: Invariance) -> bool:
    """Whether the model's shift is known (0): metric and scale-invariant models; affine ones need it fitted."""
    return invariance is not Invariance.AFFINE


def depth_factor_to_scale(factor: float, space: OutputSpace) -> float:
    """The output-space scale s (shift 0) that multiplies the depth by ``factor``."""
    if space is OutputSpace.DEPTH:
        return factor
    if space is OutputSpace.DISPARITY:
        return 1.0 / factor
    return 1.0 / math.sqrt(factor)


def focal_scale(camera: PinholeCamera, reference_focal_px: float, space: OutputSpace) -> float:
    """s for a model trained at focal length ``reference_focal_px`` (pixels, on its output grid ``camera``):
    metres = prediction · f / f_ref."""
    focal = 0.5 * (camera.fx + camera.fy)
    return depth_factor_to_scale(focal / reference_focal_px, space)


# ------------------------------------------------------------------------------------------- robust line fit
def fit_in_space(values: np.ndarray, depth_m: np.ndarray, space: OutputSpace, fit_shift: bool,
                 inlier_threshold: float = 0.1, rng: np.random.Generator | None = None) -> ScaleFit:
    """Robust (s, t) with s·p + t ≈ q, q = ``depth_m`` in ``space``, over paired samples.

    ``values`` (N,) predictions in the output space, ``depth_m`` (N,) reference metres (finite, > 0). RANSAC on
    minimal sets (1 pair for s alone, 2 for s and t): a pair is an inlier when the depth it implies is within
    ``inlier_threshold`` (relative) of the reference — an error in metres, the same in every space. The best
    hypothesis is refined by least squares in the output space on its inliers (twice, re-selecting inliers).
    Only s > 0 is accepted (every space grows monotonically with s·p + t)."""
    rng = rng or np.random.default_rng(0)
    p = np.asarray(values, np.float64).ravel()
    d = np.asarray(depth_m, np.float64).ravel()
    keep = np.isfinite(p) & np.isfinite(d) & (d > 0)
    p, d = p[keep], d[keep]
    minimal = 2 if fit_shift else 1
    if p.size < max(minimal, 8):
        return ScaleFit(samples=int(p.size), reason=f"{p.size} samples (need 8)")
    q = from_metres(d, space).astype(np.float64)
    scored = rng.choice(p.size, RANSAC_SAMPLE, replace=False) if p.size > RANSAC_SAMPLE else np.arange(p.size)
    picks = rng.integers(0, p.size, size=(RANSAC_HYPOTHESES, minimal))
    if fit_shift:
        dp = p[picks[:, 0]] - p[picks[:, 1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (q[picks[:, 0]] - q[picks[:, 1]]) / dp
        t = q[picks[:, 0]] - s * p[picks[:, 0]]
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            s = q[picks[:, 0]] / p[picks[:, 0]]
        t = np.zeros_like(s)
    good = np.isfinite(s) & np.isfinite(t) & (s > 0)
    if not good.any():
        return ScaleFit(samples=int(p.size), reason="no positive-scale hypothesis")
    s, t = s[good], t[good]
    counts = _inliers(s[:, None], t[:, None], p[scored][None], d[scored][None], space, inlier_threshold).sum(axis=1)
    best = int(np.argmax(counts))
    scale, shift = float(s[best]), float(t[best])
    for _ in range(2):
        inliers = _inliers(scale, shift, p, d, space, inlier_threshold)
        if inliers.sum() < minimal + 1:
            break
        refined = fit_scale_shift(p[inliers], q[inliers]) if fit_shift else (fit_scale(p[inliers], q[inliers]), 0.0)
        if not (refined[0] > 0 and all(map(math.isfinite, refined))):
            break
        scale, shift = refined
    ratio = float(_inliers(scale, shift, p, d, space, inlier_threshold).mean())
    return ScaleFit(scale, shift, ratio, int(p.size), ok=True)


def _inliers(s: np.ndarray | float, t: np.ndarray | float, p: np.ndarray, d: np.ndarray, space: OutputSpace,
             threshold: float) -> np.ndarray:
    """Where the depth that (s, t) give ``p`` is within ``threshold`` (relative) of the reference ``d``."""
    with np.errstate(over="ignore"):
        return np.abs(to_metres(s * p + t, space) - d) <= threshold * d


# ------------------------------------------------------------------------------------------- sparse reference
def sample_reference(reference_m: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid pixels of a reference depth image of any resolution, mapped to a ``width`` × ``height`` grid
    covering the same field of view (nearest pixel centre; sparse data is never interpolated).
    Returns (rows, cols, metres)."""
    ref = np.asarray(reference_m)
    rows, cols = np.nonzero(np.isfinite(ref) & (ref > 0))
    metres = ref[rows, cols].astype(np.float64)
    sy, sx = height / ref.shape[0], width / ref.shape[1]
    target_rows = np.clip(np.floor((rows + 0.5) * sy).astype(np.int64), 0, height - 1)
    target_cols = np.clip(np.floor((cols + 0.5) * sx).astype(np.int64), 0, width - 1)
    return target_rows, target_cols, metres


def fit_sparse(values: np.ndarray, space: OutputSpace, invariance: Invariance, reference_m: np.ndarray,
               inlier_threshold: float = 0.1, rng: np.random.Generator | None = None) -> ScaleFit:
    """(s, t) from a reference depth image (metres, NaN or 0 invalid, any resolution with the same field of view)
    against ``values`` (the prediction, model grid, output space)."""
    rows, cols, metres = sample_reference(reference_m, *values.shape)
    return fit_in_space(values[rows, cols], metres, space, not shift_known(invariance), inlier_threshold, rng)


# ------------------------------------------------------------------------------------------- ground plane
@dataclass(frozen=True)
class GroundRegion:
    """The image window searched for floor, as fractions of width and height (default: the lower middle)."""

    left: float = 0.2
    top: float = 0.55
    right: float = 0.8
    bottom: float = 1.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.left < self.right <= 1.0 and 0.0 <= self.top < self.bottom <= 1.0):
            raise ValueError(f"ground region needs 0 <= left < right <= 1 and 0 <= top < bottom <= 1, got {self}")

    def window(self, height: int, width: int) -> tuple[slice, slice]:
        return (slice(int(self.top * height), max(int(self.top * height) + 1, int(math.ceil(self.bottom * height)))),
                slice(int(self.left * width), max(int(self.left * width) + 1, int(math.ceil(self.right * width)))))


def gravity(pitch_deg: float) -> np.ndarray:
    """Unit 'down' vector in the optical frame (x right, y down, z forward) of a camera pitched down by
    ``pitch_deg`` (no roll): the floor is {X : gravity · X = camera height}."""
    pitch = math.radians(pitch_deg)
    return np.array([0.0, math.cos(pitch), math.sin(pitch)])


def fit_ground_plane(values: np.ndarray, space: OutputSpace, invariance: Invariance, camera: PinholeCamera,
                     camera_height: float, pitch_deg: float = math.nan, region: GroundRegion = GroundRegion(),
                     inlier_threshold: float = 0.02, max_tilt_deg: float = 30.0,
                     rng: np.random.Generator | None = None) -> ScaleFit:
    """(s, t) that put the floor seen in ``region`` at ``camera_height`` metres below the camera.

    ``camera`` describes ``values``' grid. ``pitch_deg`` (down positive; NaN = unknown) is needed for affine
    models; with it the fitted floor's normal must lie within ``max_tilt_deg`` of gravity, without it within
    ``max_tilt_deg`` + 20° of the optical frame's y axis (a wall is never taken for the floor)."""
    rng = rng or np.random.default_rng(0)
    rows, cols = region.window(*values.shape)
    if not shift_known(invariance):
        if not math.isfinite(pitch_deg):
            return ScaleFit(reason="an affine model needs scale.camera_pitch_deg for ground_plane")
        down = gravity(pitch_deg)
        along = down[1] * normalized_rays(camera)[1][rows, None] + down[2]  # gravity · ray, > 0 below the horizon
        below = along > 1e-3
        with np.errstate(divide="ignore"):
            floor_depth = np.where(below, camera_height / np.where(below, along, 1.0), np.nan)
        p = values[rows, cols]
        return fit_in_space(p, np.broadcast_to(floor_depth, p.shape), space, True, inlier_threshold, rng)
    # the prediction's cloud, in metres up to the unknown factor
    points = backproject(to_metres(values, space), camera)[rows, cols].reshape(-1, 3).astype(np.float64)
    points = points[np.isfinite(points[:, 2])]
    if len(points) < 50:
        return ScaleFit(samples=len(points), reason=f"{len(points)} valid pixels in the ground region")
    expected = gravity(pitch_deg) if math.isfinite(pitch_deg) else np.array([0.0, 1.0, 0.0])
    tilt = max_tilt_deg if math.isfinite(pitch_deg) else max_tilt_deg + 20.0
    plane = _ransac_plane(points, expected, math.cos(math.radians(tilt)), inlier_threshold, rng)
    if plane is None:
        return ScaleFit(samples=len(points), reason="no floor-like plane in the ground region")
    normal, offset, ratio = plane
    factor = camera_height / offset
    return ScaleFit(depth_factor_to_scale(factor, space), 0.0, ratio, len(points), ok=True)


def _ransac_plane(points: np.ndarray, expected: np.ndarray, min_cos: float, threshold: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, float, float] | None:
    """Plane n·X = h (h > 0, n towards the plane) through ``points`` (N, 3), n within acos(min_cos) of
    ``expected``. Inliers lie within ``threshold`` × their own depth of the plane, so the test does not depend on
    the unknown scale. Returns (n, h, inlier ratio) refined by least squares on the inliers, or None."""
    scored = points[rng.choice(len(points), RANSAC_SAMPLE, replace=False)] if len(points) > RANSAC_SAMPLE else points
    triples = points[rng.integers(0, len(points), size=(RANSAC_HYPOTHESES, 3))]
    normals = np.cross(triples[:, 1] - triples[:, 0], triples[:, 2] - triples[:, 0])
    length = np.linalg.norm(normals, axis=1)
    usable = length > 1e-12
    normals = normals[usable] / length[usable, None]
    normals *= np.sign(normals @ expected)[:, None]      # orient towards the floor
    offsets = np.einsum("ij,ij->i", normals, triples[usable, 0])
    plausible = (normals @ expected >= min_cos) & (offsets > 0)
    if not plausible.any():
        return None
    normals, offsets = normals[plausible], offsets[plausible]

    def near(sample: np.ndarray, normal: np.ndarray, offset: np.ndarray | float) -> np.ndarray:
        """(N, K) inlier table of N points and K planes (normal (K, 3) or (3,), offset (K,) or a number)."""
        return np.abs(sample @ np.reshape(normal, (-1, 3)).T - np.reshape(offset, -1)) <= threshold * sample[:, 2:3]

    best = int(np.argmax(near(scored, normals, offsets).sum(axis=0)))
    normal, offset = normals[best], float(offsets[best])
    for _ in range(2):
        inliers = near(points, normal, offset)[:, 0]
        if inliers.sum() < 3:
            return None
        chosen = points[inliers]
        centre = chosen.mean(axis=0)
        spread = chosen - centre
        # the normal is the direction of least spread: the smallest eigenvector of the 3×3 scatter (an SVD of the
        # N×3 points gives the same vector at many times the cost)
        refined = np.linalg.eigh(spread.T @ spread)[1][:, 0]
        refined *= np.sign(refined @ expected) or 1.0
        if refined @ expected < min_cos or refined @ centre <= 0:
            break
        normal, offset = refined, float(refined @ centre)
    return normal, offset, float(near(points, normal, offset)[:, 0].mean())


# ------------------------------------------------------------------------------------------- over time
@dataclass(frozen=True)
class ScaleState:
    """What the node publishes and reports: the (scale, shift) in use and where they came from."""

    scale: float
    shift: float
    source: str          # the scale.mode
    quality: float       # inlier ratio of the last accepted fit (1 for model/fixed)
    ok: bool             # a scale is known (False only before the first good fit)
    held: bool = False   # this frame's fit failed or was rejected; the last good one is used
    frames_held: int = 0
    rejected: int = 0    # fits rejected as outliers since the last accepted one
    message: str = ""


class ScaleTracker:
    """Fits over time: exponential smoothing of ln s (and of t) with weight ``smoothing`` on the new fit;
    a fit whose ln s is more than ``outlier_log`` from the current value is rejected, unless ``accept_after``
    consecutive fits agree on the jump (the scene or the mount really changed); once a scale is known, fits below
    ``min_quality`` inliers are ignored (the first usable fit is taken whatever its quality: it is still the best
    estimate there is). Without a fit the last good value is held."""

    def __init__(self, source: str, smoothing: float = 0.3, outlier_log: float = 0.2, min_quality: float = 0.3,
                 accept_after: int = 3) -> None:
        if not 0.0 < smoothing <= 1.0:
            raise ValueError(f"scale.smoothing must be in (0, 1], got {smoothing}")
        self.source, self.smoothing, self.outlier_log = source, smoothing, outlier_log
        self.min_quality, self.accept_after = min_quality, accept_after
        self.state = ScaleState(1.0, 0.0, source, 0.0, ok=False, message="waiting for the first scale fit")
        self._jumps: list[float] = []

    def update(self, fit: ScaleFit | None) -> ScaleState:
        state = self.state
        if fit is not None and fit.ok and not state.ok:
            return self._accept(fit, fit.scale, fit.shift)  # the first fit, however poor, beats publishing nothing
        if fit is None or not fit.ok or fit.quality < self.min_quality:
            reason = "no reference" if fit is None else (fit.reason or f"inlier ratio {fit.quality:.2f} < {self.min_quality:.2f}")
            return self._hold(reason)
        jump = math.log(fit.scale / state.scale)
        if abs(jump) > self.outlier_log:
            self._jumps = (self._jumps + [jump])[-self.accept_after:]  # the recent ones: bounded on a long run
            consistent = len(self._jumps) == self.accept_after and max(self._jumps) - min(self._jumps) <= self.outlier_log
            if not consistent:
                return self._hold(f"fit rejected: scale {fit.scale:.4g} is {math.exp(jump):.2f}x the tracked one", rejected=True)
            return self._accept(fit, fit.scale, fit.shift)   # a real change: restart from it
        w = self.smoothing
        scale = math.exp((1 - w) * math.log(state.scale) + w * math.log(fit.scale))
        return self._accept(fit, scale, (1 - w) * state.shift + w * fit.shift)

    def _accept(self, fit: ScaleFit, scale: float, shift: float) -> ScaleState:
        self._jumps = []
        self.state = ScaleState(scale, shift, self.source, fit.quality, ok=True)
        return self.state

    def _hold(self, reason: str, rejected: bool = False) -> ScaleState:
        s = self.state
        self.state = ScaleState(s.scale, s.shift, s.source, s.quality, s.ok, held=True, frames_held=s.frames_held + 1,
                                rejected=s.rejected + int(rejected),
                                message=reason if s.ok else f"waiting for the first scale fit ({reason})")
        return self.state
