"""Ray-cast a :class:`Scene` from a pinhole camera: RGB plus EXACT metric depth.

Rays are cast through pixel centres as (x/z, y/z, 1) in the optical frame, so the ray parameter of a hit
*is* the optical depth z: depth is analytic, not sampled from a z-buffer. Sky (no hit) has depth +inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from depth_node.core.camera import PinholeCamera, normalized_rays
from depth_node.synth.scene import Box, Cylinder, Material, Scene

EPS = 1e-6


@dataclass(frozen=True)
class CameraPose:
    """Camera position in the world (m) and its heading: yaw about +z (rad, 0 = +x), pitch down (rad)."""

    x: float
    y: float
    z: float
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def interpolated(self, other: CameraPose, fraction: float) -> CameraPose:
        """Between ``self`` (0) and ``other`` (1), each coordinate and angle linearly (yaw about the world's z: what
        a slerp of the two rotations gives when pitch and roll stay)."""
        return CameraPose(*(a + fraction * (b - a) for a, b in zip(
            (self.x, self.y, self.z, self.yaw, self.pitch, self.roll), (other.x, other.y, other.z, other.yaw, other.pitch, other.roll))))

    def rotation(self) -> np.ndarray:
        """3×3 world-from-optical rotation (columns: optical x = right, y = down, z = forward)."""
        cy, sy, cp, sp = math.cos(self.yaw), math.sin(self.yaw), math.cos(self.pitch), math.sin(self.pitch)
        forward = np.array([cy * cp, sy * cp, -sp])
        right = np.array([sy, -cy, 0.0])
        down = np.cross(forward, right)
        if self.roll:
            cr, sr = math.cos(self.roll), math.sin(self.roll)
            right, down = cr * right + sr * down, -sr * right + cr * down
        return np.stack([right, down, forward], axis=1)


def _box_hit(o: np.ndarray, d: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """(t, normal axis × sign encoded as 1..3 / -1..-3) per ray; t = inf where missed."""
    lo, hi = np.asarray(box.lo), np.asarray(box.hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (lo - o) * inv
        t2 = (hi - o) * inv
    t1 = np.nan_to_num(t1, nan=-np.inf)
    t2 = np.nan_to_num(t2, nan=np.inf)
    tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
    t_near, t_far = tmin.max(axis=1), tmax.min(axis=1)
    if box.inside:
        t = np.where(t_far >= np.maximum(t_near, EPS), t_far, np.inf)
        axis = tmax.argmin(axis=1)
    else:
        t = np.where((t_far >= t_near) & (t_near > EPS), t_near, np.inf)
        axis = tmin.argmax(axis=1)
    sign = -np.sign(d[np.arange(d.shape[0]), axis])  # the normal faces the ray
    return t, (axis + 1) * sign.astype(np.int64)


def _cylinder_hit(o: np.ndarray, d: np.ndarray, c: Cylinder) -> tuple[np.ndarray, np.ndarray]:
    """(t, cap flag) per ray for a vertical cylinder with a flat top."""
    ox, oy = o[0] - c.x, o[1] - c.y
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = 2 * (ox * d[:, 0] + oy * d[:, 1])
    cc = ox * ox + oy * oy - c.radius**2
    disc = b * b - 4 * a * cc
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(disc)) / (2 * a)
    z = o[2] + t_side * d[:, 2]
    t_side = np.where((disc >= 0) & (t_side > EPS) & (z >= c.z0) & (z <= c.z1), t_side, np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_cap = (c.z1 - o[2]) / d[:, 2]
    px, py = ox + t_cap * d[:, 0], oy + t_cap * d[:, 1]
    t_cap = np.where((t_cap > EPS) & (px * px + py * py <= c.radius**2), t_cap, np.inf)
    cap = t_cap < t_side
    return np.minimum(t_side, t_cap), cap


def _hash_noise(p: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1] at 2-D points (N, 2): hashed lattice values, smoothstep-interpolated."""
    i = np.floor(p).astype(np.int64)
    f = p - i
    f = f * f * (3 - 2 * f)

    def h(ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
        n = (ix * 374761393 + iy * 668265263 + seed * 2147483647) & 0xFFFFFFFF
        n = ((n ^ (n >> 13)) * 1274126177) & 0xFFFFFFFF
        return (n & 0xFFFF) / 65535.0

    a, b = h(i[:, 0], i[:, 1]), h(i[:, 0] + 1, i[:, 1])
    c, d = h(i[:, 0], i[:, 1] + 1), h(i[:, 0] + 1, i[:, 1] + 1)
    return (a * (1 - f[:, 0]) + b * f[:, 0]) * (1 - f[:, 1]) + (c * (1 - f[:, 0]) + d * f[:, 0]) * f[:, 1]


def _pattern(material: Material, uv: np.ndarray, seed: int) -> np.ndarray:
    """Mix weight in [0, 1] of colour b over colour a at surface coordinates uv (N, 2) in metres."""
    s = material.scale
    q = uv / s
    t = material.texture
    if t == "flat":
        return 0.15 * _hash_noise(q * 4, seed)
    if t == "checker":
        return ((np.floor(q[:, 0]) + np.floor(q[:, 1])) % 2) * 0.8 + 0.2 * _hash_noise(q * 8, seed)
    if t == "noise":
        return 0.6 * _hash_noise(q, seed) + 0.4 * _hash_noise(q * 4.3, seed + 1)
    if t == "stripes":
        return 0.5 + 0.5 * np.sin(q[:, 0] * 2 * np.pi) * (0.7 + 0.3 * _hash_noise(q * 3, seed))
    if t == "brick":
        row = np.floor(q[:, 1] * 3)
        x = q[:, 0] * 1.5 + 0.5 * (row % 2)
        mortar = (np.abs(q[:, 1] * 3 - np.round(q[:, 1] * 3)) < 0.06) | (np.abs(x - np.round(x)) < 0.04)
        return np.where(mortar, 1.0, 0.25 * _hash_noise(np.stack([np.floor(x), row], 1), seed))
    if t == "windows":
        u, v = uv[:, 0] % 3.0, uv[:, 1] % 3.2
        window = (u > 0.8) & (u < 2.2) & (v > 0.9) & (v < 2.4)
        return np.where(window, 0.9, 0.1 * _hash_noise(q * 2, seed))
    raise ValueError(f"unknown texture {t!r}")


def _sky(dirs: np.ndarray) -> np.ndarray:
    elevation = np.clip(dirs[:, 2] / np.linalg.norm(dirs, axis=1), -1, 1)
    w = np.clip(elevation * 2.0, 0, 1)[:, None]
    return (1 - w) * np.array([0.85, 0.88, 0.92]) + w * np.array([0.35, 0.55, 0.9])


def cast(scene: Scene, origin: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit of each ray ``origin + t * direction`` (world frame; (N, 3) directions, any length): ``t`` (inf =
    nothing hit), the primitive's index (-1) and the hit face's code (for shading)."""
    o, d = np.asarray(origin, np.float64), np.asarray(directions, np.float64)
    n_rays = d.shape[0]
    best_t = np.full(n_rays, np.inf)
    best_id = np.full(n_rays, -1, np.int64)
    best_code = np.zeros(n_rays, np.int64)
    for index, prim in enumerate(scene.primitives):
        if isinstance(prim, Box):
            t, code = _box_hit(o, d, prim)
        elif isinstance(prim, Cylinder):
            t, cap = _cylinder_hit(o, d, prim)
            code = np.where(cap, 3, 0)
        else:  # Ground
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(d[:, 2] < 0, -o[2] / d[:, 2], np.inf)
            code = np.full(n_rays, 3)
        closer = t < best_t
        best_t[closer], best_id[closer], best_code[closer] = t[closer], index, code[closer]
    return best_t, best_id, best_code


def render(scene: Scene, camera: PinholeCamera, pose: CameraPose, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (H, W, 3) RGB and float32 (H, W) depth in metres along the optical axis (+inf = sky)."""
    u, v = normalized_rays(camera)
    rays_cam = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1), np.float32)), axis=-1).reshape(-1, 3)
    rot = pose.rotation()
    d = rays_cam.astype(np.float64) @ rot.T  # world direction, scaled so that t = optical depth
    o = np.array([pose.x, pose.y, pose.z])
    n_rays = d.shape[0]
    best_t, best_id, best_code = cast(scene, o, d)

    colour = np.zeros((n_rays, 3))
    hit = np.isfinite(best_t)
    points = o + d * best_t[:, None]
    normals = np.zeros((n_rays, 3))
    sun = np.asarray(scene.sun) / np.linalg.norm(scene.sun)
    for index, prim in enumerate(scene.primitives):
        sel = np.nonzero(best_id == index)[0]
        if sel.size == 0:
            continue
        p = points[sel]
        code = best_code[sel]
        if isinstance(prim, Cylinder):
            radial = np.stack([p[:, 0] - prim.x, p[:, 1] - prim.y, np.zeros(sel.size)], 1) / prim.radius
            normal = np.where((code == 3)[:, None], np.array([0.0, 0.0, 1.0]), radial)
            angle = np.arctan2(p[:, 1] - prim.y, p[:, 0] - prim.x) * prim.radius
            uv = np.where((code == 3)[:, None], p[:, :2], np.stack([angle, p[:, 2]], 1))
        else:
            axis = np.abs(code) - 1
            normal = np.zeros((sel.size, 3))
            normal[np.arange(sel.size), axis] = np.sign(code)
            # Surface coordinates: the two world axes in the face's plane (z kept vertical on walls).
            uv = np.where((axis == 2)[:, None], p[:, :2], np.where((axis == 0)[:, None], p[:, 1:3], p[:, [0, 2]]))
        m = prim.material
        w = np.clip(_pattern(m, uv, seed + index), 0, 1)[:, None]
        albedo = (1 - w) * np.asarray(m.color_a) + w * np.asarray(m.color_b)
        light = scene.ambient + (1 - scene.ambient) * np.clip(normal @ sun, 0, 1)
        if scene.lamp is not None:
            to_lamp = np.asarray(scene.lamp) - p
            dist2 = np.einsum("ij,ij->i", to_lamp, to_lamp)
            light = light + 0.6 * np.clip(np.einsum("ij,ij->i", normal, to_lamp) / np.sqrt(dist2), 0, 1) / (1 + 0.08 * dist2)
        shaded = albedo * light[:, None]
        if scene.sky:  # aerial perspective: far surfaces fade towards the horizon colour
            fog = 1 - np.exp(-best_t[sel] / 250.0)
            shaded = (1 - fog[:, None]) * shaded + fog[:, None] * np.array([0.85, 0.88, 0.92])
        colour[sel] = shaded
        normals[sel] = normal
    if scene.sky:
        colour[~hit] = _sky(d[~hit])
    rgb = (np.clip(colour, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(camera.height, camera.width, 3)
    depth = best_t.astype(np.float32).reshape(camera.height, camera.width)
    return rgb, depth


def trajectory(scene: Scene, frames: int, height: float, pitch_deg: float, rng: np.random.Generator) -> list[CameraPose]:
    """A smooth drive along the scene's free lane: constant height and pitch, gently swaying yaw."""
    x0, x1 = scene.path_x
    height = min(height, scene.bounds_z - 0.2)
    phase, sway = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.03, 0.15))
    poses = []
    for i in range(frames):
        s = i / max(frames - 1, 1)
        poses.append(
            CameraPose(
                x=x0 + (x1 - x0) * s,
                y=scene.path_y + 0.2 * math.sin(phase + 2 * s),
                z=height,
                yaw=sway * math.sin(phase + 3 * s),
                pitch=math.radians(pitch_deg),
            )
        )
    return poses
