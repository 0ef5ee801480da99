"""Lane centerline paths along a route, sampled for planning and evaluation.

A :class:`LanePath` is a polyline in the ROS map frame with arc length,
heading and speed limit at each sample. Paths through a whole route are
built once per episode (:func:`build_lane_path`); each planning step takes a
:meth:`LanePath.window` ahead of the ego, whose lateral offset from the lane
fades out smoothly (re-joining the lane, or a lane change).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latentvla_ros.simulation.highway_frames import position_to_ros

LaneIndex = tuple[str, str, int]
SAMPLE_SPACING_M = 0.5
# highway-env's roundabout entries and exits do not meet the ring lanes end to
# end: joints with a larger gap are bridged with a smooth curve.
JOINT_GAP_TOLERANCE_M = 0.3


def closest_on_polyline(points: np.ndarray, position: np.ndarray) -> tuple[int, float, float]:
    """(segment index, fraction along it, distance) of the point of the polyline ``points``
    (N, 2) closest to ``position`` (2,)."""
    starts, ends = points[:-1], points[1:]
    segment = ends - starts
    length_sq = np.maximum((segment**2).sum(axis=1), 1e-12)
    fraction = np.clip(((position - starts) * segment).sum(axis=1) / length_sq, 0.0, 1.0)
    distance = np.linalg.norm(starts + fraction[:, None] * segment - position, axis=1)
    best = int(np.argmin(distance))
    return best, float(fraction[best]), float(distance[best])


@dataclass(frozen=True)
class LanePath:
    """``points`` (M, 2) map frame; ``arc_length_m``, ``heading_rad``, ``speed_limit_mps`` (M,).
    ``ends_in_dead_end``: the lane ends there (a lane drop), it is not just the sampled horizon."""

    points: np.ndarray
    arc_length_m: np.ndarray
    heading_rad: np.ndarray
    speed_limit_mps: np.ndarray
    ends_in_dead_end: bool = False

    def __post_init__(self) -> None:
        # Interpolating headings needs them continuous; unwrap once, not at every lookup.
        object.__setattr__(self, "_heading_unwrapped", np.unwrap(self.heading_rad))

    @staticmethod
    def from_points(points: np.ndarray, speed_limit_mps: np.ndarray, ends_in_dead_end: bool = False) -> LanePath:
        """Arc length and headings (from the polyline itself) for (M, 2) points."""
        steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
        arc_length = np.concatenate([[0.0], np.cumsum(steps)])
        tangent = np.gradient(points, axis=0) if len(points) > 1 else np.array([[1.0, 0.0]])
        heading = np.arctan2(tangent[:, 1], tangent[:, 0])
        return LanePath(points, arc_length, heading, np.asarray(speed_limit_mps, dtype=np.float64), ends_in_dead_end)

    @property
    def length_m(self) -> float:
        return float(self.arc_length_m[-1])

    def project(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arc length and unsigned distance of (..., 2) positions to the nearest sample."""
        positions = np.asarray(positions, dtype=np.float64)
        flat = positions.reshape(-1, 2)
        # |p - q|^2 = |p|^2 - 2 p.q + |q|^2, without an (N, M, 2) temporary.
        squared = (
            np.einsum("ij,ij->i", flat, flat)[:, None]
            - 2.0 * flat @ self.points.T
            + np.einsum("ij,ij->i", self.points, self.points)[None, :]
        )
        nearest = squared.argmin(axis=1)
        distance = np.sqrt(np.maximum(squared[np.arange(len(flat)), nearest], 0.0))
        shape = positions.shape[:-1]
        return self.arc_length_m[nearest].reshape(shape), distance.reshape(shape)

    def project_near(self, position: np.ndarray, around_m: float, radius_m: float = 25.0) -> float:
        """Arc length of the point of the polyline closest to ``position`` (2,), searched only
        within ``radius_m`` of arc length ``around_m`` (so a path crossing itself cannot capture it)."""
        window = np.flatnonzero(np.abs(self.arc_length_m - around_m) <= radius_m)
        if len(window) < 2:
            window = np.arange(len(self.points))
        best, fraction, _ = closest_on_polyline(self.points[window], position)
        arc_start, arc_end = self.arc_length_m[window[best]], self.arc_length_m[window[best + 1]]
        return float(arc_start + fraction * (arc_end - arc_start))

    def signed_lateral_offset(self, position: np.ndarray, arc_length_m: float) -> float:
        """Offset (m, positive left) of ``position`` from the path at ``arc_length_m``."""
        x, y, heading = self.pose_at(arc_length_m)
        return float(-np.sin(heading) * (position[0] - x) + np.cos(heading) * (position[1] - y))

    def pose_at(self, arc_length_m: np.ndarray | float) -> np.ndarray:
        """(..., 3) x, y, yaw interpolated at arc lengths (clamped to the path)."""
        s = np.clip(np.asarray(arc_length_m, dtype=np.float64), 0.0, self.length_m)
        x = np.interp(s, self.arc_length_m, self.points[:, 0])
        y = np.interp(s, self.arc_length_m, self.points[:, 1])
        heading = np.interp(s, self.arc_length_m, self._heading_unwrapped)
        return np.stack([x, y, heading], axis=-1)

    def curvature(self) -> np.ndarray:
        """(M,) signed curvature (1/m) from the heading's change along the path."""
        if len(self.heading_rad) < 2:
            return np.zeros_like(self.heading_rad)
        return np.gradient(self._heading_unwrapped, self.arc_length_m)

    def window(
        self, start_m: float, length_m: float, start_lateral_m: float = 0.0, blend_length_m: float = 10.0
    ) -> LanePath:
        """The part [start_m, start_m + length_m], starting ``start_lateral_m`` beside the path
        (positive left) and fading onto it over ``blend_length_m`` with a cosine profile."""
        end_m = min(self.length_m, start_m + length_m)
        inside = (self.arc_length_m > start_m) & (self.arc_length_m < end_m)
        arc = np.concatenate([[start_m], self.arc_length_m[inside], [end_m]])
        arc = arc[np.concatenate([[True], np.diff(arc) > 1e-6])]
        if len(arc) < 2:
            arc = np.array([start_m, start_m + 1e-3])
        poses = self.pose_at(arc)
        fraction = np.clip((arc - start_m) / max(blend_length_m, 1e-6), 0.0, 1.0)
        lateral = start_lateral_m * 0.5 * (1.0 + np.cos(np.pi * fraction))
        points = poses[:, :2] + lateral[:, None] * np.column_stack([-np.sin(poses[:, 2]), np.cos(poses[:, 2])])
        limits = np.interp(arc, self.arc_length_m, self.speed_limit_mps)
        reaches_end = end_m >= self.length_m - 1e-6
        return LanePath.from_points(points, limits, ends_in_dead_end=self.ends_in_dead_end and reaches_end)


def _lane_points(lane, start_m: float, end_m: float) -> np.ndarray:
    """(M, 2) ROS-frame centerline samples of a highway-env lane."""
    count = max(2, int(np.ceil((end_m - start_m) / SAMPLE_SPACING_M)) + 1)
    return position_to_ros(np.array([lane.position(s, 0.0) for s in np.linspace(start_m, end_m, count)]))


def _bridge(previous: np.ndarray, following: np.ndarray) -> np.ndarray:
    """Points (K, 2) of a cubic Hermite curve from the end of ``previous`` to the start of
    ``following``, leaving and arriving along each polyline's direction (endpoints excluded)."""
    p0, p1 = previous[-1], following[0]
    gap = float(np.linalg.norm(p1 - p0))
    t0 = previous[-1] - previous[-2]
    t1 = following[1] - following[0]
    t0 = t0 / np.linalg.norm(t0) * gap
    t1 = t1 / np.linalg.norm(t1) * gap
    u = np.linspace(0.0, 1.0, max(3, int(np.ceil(gap / SAMPLE_SPACING_M)) + 1))[1:-1, None]
    h00, h10, h01, h11 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u, -2 * u**3 + 3 * u**2, u**3 - u**2
    return h00 * p0 + h10 * t0 + h01 * p1 + h11 * t1


def build_lane_path(network, lanes: Sequence[LaneIndex], ends_in_dead_end: bool = False) -> LanePath:
    """The centerline through ``lanes`` (highway-env lane indices), end to end."""
    point_chunks, limit_chunks = [], []
    for lane_index in lanes:
        lane = network.get_lane(lane_index)
        points = _lane_points(lane, 0.0, lane.length)
        limit = float(lane.speed_limit or 30.0)
        if point_chunks:
            if np.linalg.norm(points[0] - point_chunks[-1][-1]) > JOINT_GAP_TOLERANCE_M:
                bridge = _bridge(point_chunks[-1], points)
                point_chunks.append(bridge)
                limit_chunks.append(np.full(len(bridge), min(limit, limit_chunks[-1][-1])))
            else:
                points = points[1:]  # the shared joint sample
        point_chunks.append(points)
        limit_chunks.append(np.full(len(points), limit))
    return LanePath.from_points(np.vstack(point_chunks), np.concatenate(limit_chunks), ends_in_dead_end)


def extend_straight(path: LanePath, extra_m: float) -> LanePath:
    """Continue a path straight along its last heading (past a route's end)."""
    steps = np.arange(1, int(np.ceil(extra_m / SAMPLE_SPACING_M)) + 1) * SAMPLE_SPACING_M
    heading = path.heading_rad[-1]
    extra = path.points[-1] + steps[:, None] * np.array([np.cos(heading), np.sin(heading)])
    limits = np.concatenate([path.speed_limit_mps, np.full(len(steps), path.speed_limit_mps[-1])])
    return LanePath.from_points(np.vstack([path.points, extra]), limits, ends_in_dead_end=False)
