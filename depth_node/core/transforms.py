"""Rigid transforms between sensor frames, and a small tree of them over time (what tf2 does, for a bag's ``/tf``
and ``/tf_static`` without a ROS distro).

A :class:`RigidTransform` ``T`` named ``a_from_b`` maps points given in frame ``b`` into frame ``a``:
``p_a = R p_b + t`` — the transform tf2 stores under ``header.frame_id = a``, ``child_frame_id = b``.
Quaternions are ``(x, y, z, w)`` as in ``geometry_msgs/Quaternion``.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from dataclasses import dataclass, field

import numpy as np


def rotation_from_quaternion(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    """3×3 rotation matrix of a quaternion (normalized here; a zero quaternion raises ValueError)."""
    q = np.array([qx, qy, qz, qw], np.float64)
    norm = float(np.linalg.norm(q))
    if not (norm > 1e-9 and math.isfinite(norm)):
        raise ValueError(f"quaternion ({qx}, {qy}, {qz}, {qw}) has no rotation: its norm is {norm:g}")
    x, y, z, w = q / norm
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def quaternion_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """(x, y, z, w), w ≥ 0, of a 3×3 rotation matrix (Shepperd's method: the largest diagonal term first)."""
    m = np.asarray(rotation, np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2 * math.sqrt(1 + trace)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2 * math.sqrt(1 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i], q[j], q[k] = s / 4, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return -q if q[3] < 0 else q


@dataclass(frozen=True)
class RigidTransform:
    """``p_target = rotation @ p_source + translation`` (metres)."""

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @classmethod
    def from_xyz_quaternion(cls, x: float, y: float, z: float, qx: float, qy: float, qz: float, qw: float) -> RigidTransform:
        return cls(rotation_from_quaternion(qx, qy, qz, qw), np.array([x, y, z], np.float64))

    @classmethod
    def parse(cls, text: str) -> RigidTransform:
        """``"x,y,z,qx,qy,qz,qw"`` (metres; a quaternion) → transform, or ValueError saying the expected form."""
        try:
            values = [float(v) for v in text.replace(" ", "").split(",")]
        except ValueError:
            values = []
        if len(values) != 7 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"expected x,y,z,qx,qy,qz,qw (7 numbers: metres and a quaternion), got {text!r}")
        return cls.from_xyz_quaternion(*values)

    def quaternion(self) -> np.ndarray:
        return quaternion_from_rotation(self.rotation)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points in the source frame → (N, 3) float64 in the target frame."""
        return np.asarray(points, np.float64) @ self.rotation.T + self.translation

    def __matmul__(self, other: RigidTransform) -> RigidTransform:
        """``a_from_b @ b_from_c`` = ``a_from_c``."""
        return RigidTransform(self.rotation @ other.rotation, self.rotation @ other.translation + self.translation)

    def inverse(self) -> RigidTransform:
        return RigidTransform(self.rotation.T, -self.rotation.T @ self.translation)

    def interpolated(self, other: RigidTransform, fraction: float) -> RigidTransform:
        """Between ``self`` (0) and ``other`` (1): translation linearly, rotation along the shortest arc (slerp)."""
        q0, q1 = self.quaternion(), other.quaternion()
        dot = float(np.dot(q0, q1))
        if dot < 0:
            q1, dot = -q1, -dot
        if dot > 0.9995:  # nearly the same rotation: a normalized lerp is exact to float precision
            q = q0 + fraction * (q1 - q0)
        else:
            angle = math.acos(dot)
            q = (math.sin((1 - fraction) * angle) * q0 + math.sin(fraction * angle) * q1) / math.sin(angle)
        return RigidTransform(rotation_from_quaternion(*q), self.translation + fraction * (other.translation - self.translation))


class TransformError(LookupError):
    """No chain of transforms joins two frames (or none at the time asked): which frames the tree knows."""


class TransformTree:
    """Edges parent → child as tf2 keeps them: static ones, and moving ones sampled over time (interpolated between
    samples; outside the samples' span by more than ``max_extrapolation_ns``, refused as tf2 refuses)."""

    def __init__(self, max_extrapolation_ns: int = 0) -> None:
        self._static: dict[tuple[str, str], RigidTransform] = {}
        self._moving: dict[tuple[str, str], list[tuple[int, RigidTransform]]] = defaultdict(list)
        self._neighbours: dict[str, set[str]] = defaultdict(set)
        self.max_extrapolation_ns = max_extrapolation_ns

    def add(self, parent: str, child: str, parent_from_child: RigidTransform, stamp_ns: int | None = None) -> None:
        """A static edge (``stamp_ns`` None) or one sample of a moving edge."""
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if stamp_ns is None:
            self._static[(parent, child)] = parent_from_child
        else:
            self._moving[(parent, child)].append((int(stamp_ns), parent_from_child))
        self._neighbours[parent].add(child)
        self._neighbours[child].add(parent)

    @property
    def frames(self) -> list[str]:
        return sorted(self._neighbours)

    def moves(self, a: str, b: str) -> bool:
        """Whether the chain between two frames has a moving edge."""
        path = self._path(a.lstrip("/"), b.lstrip("/"))
        return any((p, c) in self._moving or (c, p) in self._moving for p, c in zip(path, path[1:]))

    def lookup(self, target: str, source: str, stamp_ns: int = 0) -> RigidTransform:
        """``target_from_source`` at ``stamp_ns`` (static chains ignore the time)."""
        target, source = target.lstrip("/"), source.lstrip("/")
        path = self._path(target, source)
        result = RigidTransform()
        for a, b in zip(path, path[1:]):  # target … source: compose a_from_b along the way
            result = result @ self._edge(a, b, stamp_ns)
        return result

    def lookup_across_time(self, target: str, target_ns: int, source: str, source_ns: int, fixed: str) -> RigidTransform:
        """``target`` at ``target_ns`` from ``source`` at ``source_ns`` through a frame fixed in the world (``odom``):
        points measured at one time, seen from where the target was at another (tf2's advanced lookupTransform)."""
        return self.lookup(target, fixed, target_ns) @ self.lookup(fixed, source, source_ns)

    def _path(self, target: str, source: str) -> list[str]:
        for frame in (target, source):
            if frame not in self._neighbours:
                known = ", ".join(self.frames) or "none"
                raise TransformError(f"frame {frame!r} is in no transform (frames known: {known})")
        previous: dict[str, str | None] = {target: None}
        queue = deque([target])
        while queue:
            frame = queue.popleft()
            if frame == source:
                break
            for nxt in sorted(self._neighbours[frame]):
                if nxt not in previous:
                    previous[nxt] = frame
                    queue.append(nxt)
        if source not in previous:
            raise TransformError(f"no chain of transforms joins {target!r} and {source!r} (frames known: {', '.join(self.frames)})")
        path = [source]
        while previous[path[-1]] is not None:
            path.append(previous[path[-1]])  # type: ignore[arg-type]
        return path[::-1]

    def _edge(self, a: str, b: str, stamp_ns: int) -> RigidTransform:
        """``a_from_b`` for neighbouring frames."""
        if (a, b) in self._static:
            return self._static[(a, b)]
        if (b, a) in self._static:
            return self._static[(b, a)].inverse()
        if (a, b) in self._moving:
            return self._sample(a, b, stamp_ns)
        return self._sample(b, a, stamp_ns).inverse()

    def _sample(self, parent: str, child: str, stamp_ns: int) -> RigidTransform:
        samples = self._moving[(parent, child)]
        samples.sort(key=lambda s: s[0])
        stamps = [s for s, _ in samples]
        if stamp_ns < stamps[0] - self.max_extrapolation_ns or stamp_ns > stamps[-1] + self.max_extrapolation_ns:
            raise TransformError(f"{parent} → {child} is known from {stamps[0] / 1e9:.3f} s to {stamps[-1] / 1e9:.3f} s, "
                                 f"not at {stamp_ns / 1e9:.3f} s")
        i = int(np.searchsorted(stamps, stamp_ns))
        if i == 0:
            return samples[0][1]
        if i == len(samples):
            return samples[-1][1]
        (t0, a), (t1, b) = samples[i - 1], samples[i]
        return a.interpolated(b, (stamp_ns - t0) / (t1 - t0))
