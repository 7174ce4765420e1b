"""Procedural scenes for exact-depth test data: rooms, corridors and streets built from analytic primitives.

World frame (REP 103): x forward, y left, z up, metres; the floor / ground is z = 0. Scenes are pure data
(:class:`Scene`), generated deterministically from a ``numpy.random.Generator``; :mod:`.render` ray-casts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TEXTURES = ("flat", "checker", "noise", "stripes", "brick", "windows")


@dataclass(frozen=True)
class Material:
    """Surface look: a texture pattern mixing two RGB colours in [0, 1] at a scale in metres."""

    texture: str
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    scale: float = 0.5


@dataclass(frozen=True)
class Box:
    """Axis-aligned box; ``inside`` makes it a room seen from within (walls, floor, ceiling)."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    material: Material
    inside: bool = False


@dataclass(frozen=True)
class Cylinder:
    """Vertical cylinder (pillar, lamp, barrel) with a flat top."""

    x: float
    y: float
    radius: float
    z0: float
    z1: float
    material: Material


@dataclass(frozen=True)
class Ground:
    """The infinite plane z = 0 (outdoor scenes)."""

    material: Material


@dataclass
class Scene:
    """Primitives plus lighting. ``sky`` is True for outdoor scenes: rays that hit nothing are sky (depth ∞)."""

    kind: str
    primitives: list[Box | Cylinder | Ground] = field(default_factory=list)
    sun: tuple[float, float, float] = (0.3, 0.2, 0.93)
    ambient: float = 0.35
    lamp: tuple[float, float, float] | None = None  # indoor point light
    sky: bool = False
    path_y: float = 0.0  # the camera drives along y = path_y
    path_x: tuple[float, float] = (0.0, 1.0)  # from x0 to x1
    bounds_z: float = 3.0  # ceiling or a sensible camera height limit


def _colour(rng: np.random.Generator, lo: float = 0.15, hi: float = 0.95) -> tuple[float, float, float]:
    return tuple(float(c) for c in rng.uniform(lo, hi, 3))  # type: ignore[return-value]


def _material(rng: np.random.Generator, textures: tuple[str, ...] = TEXTURES[:5]) -> Material:
    a = np.array(_colour(rng))
    b = np.clip(a * rng.uniform(0.4, 0.8) + rng.uniform(-0.1, 0.1, 3), 0, 1)
    return Material(str(rng.choice(textures)), tuple(a), tuple(float(x) for x in b), float(rng.uniform(0.08, 0.8)))


def _furniture(rng: np.random.Generator, x: float, y: float, yaw_free: bool = True) -> list[Box | Cylinder]:
    """A random furniture-like group at (x, y): cabinet, table on legs, shelf or a pillar/lamp."""
    kind = rng.choice(["cabinet", "table", "shelf", "pillar"])
    mat = _material(rng)
    if kind == "cabinet":
        w, d, h = rng.uniform(0.4, 1.2), rng.uniform(0.4, 0.9), rng.uniform(0.5, 2.0)
        return [Box((x - w / 2, y - d / 2, 0.0), (x + w / 2, y + d / 2, h), mat)]
    if kind == "table":
        w, d, h, t = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.0), rng.uniform(0.65, 0.8), 0.04
        leg = 0.05
        parts: list[Box | Cylinder] = [Box((x - w / 2, y - d / 2, h - t), (x + w / 2, y + d / 2, h), mat)]
        for sx in (-1, 1):
            for sy in (-1, 1):
                cx, cy = x + sx * (w / 2 - leg), y + sy * (d / 2 - leg)
                parts.append(Box((cx - leg / 2, cy - leg / 2, 0.0), (cx + leg / 2, cy + leg / 2, h - t), mat))
        return parts
    if kind == "shelf":
        w, d, h = rng.uniform(0.6, 1.4), rng.uniform(0.25, 0.4), rng.uniform(1.2, 2.0)
        side = 0.03
        parts = [
            Box((x - w / 2, y - d / 2, 0.0), (x - w / 2 + side, y + d / 2, h), mat),
            Box((x + w / 2 - side, y - d / 2, 0.0), (x + w / 2, y + d / 2, h), mat),
        ]
        for z in np.linspace(0.05, h - 0.03, int(rng.integers(3, 6))):
            parts.append(Box((x - w / 2, y - d / 2, z), (x + w / 2, y + d / 2, z + 0.03), mat))
        return parts
    r = rng.uniform(0.1, 0.35)
    return [Cylinder(x, y, r, 0.0, float(rng.uniform(0.8, 2.5)), mat)]


def indoor_room(rng: np.random.Generator, corridor: bool = False) -> Scene:
    """A room (or a long corridor) with furniture along the walls and a free lane down the middle."""
    if corridor:
        length, width, height = rng.uniform(14, 30), rng.uniform(1.8, 3.0), rng.uniform(2.4, 3.0)
    else:
        length, width, height = rng.uniform(5, 10), rng.uniform(3.5, 7), rng.uniform(2.4, 3.2)
    walls = Material(str(rng.choice(["flat", "noise", "stripes", "brick"])), _colour(rng, 0.5, 0.95), _colour(rng, 0.3, 0.8), float(rng.uniform(0.1, 0.6)))
    prims: list[Box | Cylinder | Ground] = [Box((0.0, -width / 2, 0.0), (length, width / 2, height), walls, inside=True)]
    floor = Material(str(rng.choice(["checker", "noise", "stripes"])), _colour(rng, 0.2, 0.8), _colour(rng, 0.1, 0.6), float(rng.uniform(0.2, 0.8)))
    prims.append(Box((0.0, -width / 2, -0.1), (length, width / 2, 0.0), floor))  # textured floor slab
    lane = 0.45 if corridor else min(1.0, width / 4)
    count = int(rng.integers(3, 9 if not corridor else 7))
    for _ in range(count):
        side = rng.choice([-1, 1])
        x = float(rng.uniform(1.5, length - 0.5))
        if width / 2 - 0.2 < lane + 0.35:  # no room beside the lane (a narrow corridor): no furniture
            continue
        y = float(side * rng.uniform(lane + 0.35, width / 2 - 0.2))
        for part in _furniture(rng, x, y):
            prims.append(part)
    return Scene(
        kind="corridor" if corridor else "room",
        primitives=prims,
        sun=tuple(float(v) for v in rng.normal(0, 1, 3) * [0.3, 0.3, 0.2] + [0.2, 0.1, 0.9]),
        ambient=float(rng.uniform(0.3, 0.5)),
        lamp=(float(rng.uniform(1, length - 1)), float(rng.uniform(-width / 4, width / 4)), height - 0.1),
        sky=False,
        path_y=0.0,
        path_x=(0.3, max(0.8, length * 0.6)),
        bounds_z=height,
    )


def outdoor_street(rng: np.random.Generator) -> Scene:
    """Ground with a road, buildings on both sides, poles, and sky at infinity."""
    ground = Material("noise", _colour(rng, 0.25, 0.45), _colour(rng, 0.15, 0.3), float(rng.uniform(0.3, 1.5)))
    prims: list[Box | Cylinder | Ground] = [Ground(ground)]
    half_road = float(rng.uniform(4, 9))
    for side in (-1, 1):
        x = float(rng.uniform(-5, 5))
        while x < 150:
            w = float(rng.uniform(6, 20))
            depth = float(rng.uniform(6, 15))
            h = float(rng.uniform(4, 30))
            setback = float(rng.uniform(0, 6))
            y0 = side * (half_road + setback)
            y1 = side * (half_road + setback + depth)
            mat = _material(rng, ("brick", "windows", "stripes", "noise"))
            prims.append(Box((x, min(y0, y1), 0.0), (x + w, max(y0, y1), h), mat))
            x += w + float(rng.uniform(0, 8))
    pole = Material("flat", (0.4, 0.4, 0.42), (0.3, 0.3, 0.3))
    for x in np.arange(rng.uniform(3, 10), 120, rng.uniform(12, 25)):
        side = rng.choice([-1, 1])
        prims.append(Cylinder(float(x), float(side * (half_road - 0.5)), 0.12, 0.0, float(rng.uniform(4, 7)), pole))
    for _ in range(int(rng.integers(2, 6))):  # parked boxes (vehicles)
        x, side = float(rng.uniform(5, 80)), rng.choice([-1, 1])
        y = side * (half_road - 1.5)
        prims.append(Box((x, y - 0.9, 0.0), (x + 4.3, y + 0.9, float(rng.uniform(1.4, 2.0))), _material(rng)))
    sun = rng.normal(0, 1, 3) * [0.5, 0.5, 0.2] + [0.3, 0.2, 0.8]
    return Scene(kind="street", primitives=prims, sun=tuple(float(v) for v in sun), ambient=float(rng.uniform(0.35, 0.55)),
                 sky=True, path_y=float(rng.uniform(-half_road / 3, half_road / 3)), path_x=(0.0, 30.0), bounds_z=3.0)


SCENE_KINDS = {"room": lambda rng: indoor_room(rng), "corridor": lambda rng: indoor_room(rng, corridor=True), "street": outdoor_street}
