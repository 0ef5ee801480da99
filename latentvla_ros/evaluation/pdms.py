"""NAVSIM's PDM score of one planned trajectory (ROS-free).

PDMS = NC · DAC · (5·TTC + 5·EP + 2·C) / 12 with NAVSIM's sub-scores and thresholds:

- **NC** no at-fault collision: 1; an at-fault collision with a moving agent 0, with a
  static one (slower than ``STATIC_SPEED_MPS``) 0.5. Not at fault: while the ego stands,
  or when the other agent hits the ego's rear.
- **DAC** drivable-area compliance: every corner of the ego's footprint at every pose on
  the drivable area (1) or not (0); ``None`` without a map (then left out of the product).
- **TTC** time to collision: at every pose the ego and the agents, each moved on at its
  current velocity for up to 1 s, must not meet ahead of the ego (1) — else 0.
- **EP** ego progress: the plan's progress along the reference path over the larger of
  it and the reference's own; 1 when neither gets ``PROGRESS_THRESHOLD_M`` far.
- **C** comfort: the trajectory's longitudinal acceleration within [-4.05, 2.40] m/s²,
  |lateral acceleration| <= 4.89, |jerk| <= 8.37, |longitudinal jerk| <= 4.13,
  |yaw acceleration| <= 1.93 rad/s², |yaw rate| <= 0.95 rad/s.

Everything is in the ego frame at the planning time: the plan's poses, the agents'
future boxes at the same 0.5 s steps (non-reactive: as logged), the reference path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.trajectory import Trajectory

EGO_LENGTH_M = 4.8
EGO_WIDTH_M = 2.0
STATIC_SPEED_MPS = 0.5
STOPPED_SPEED_MPS = 0.1
TTC_HORIZON_S = 1.0
TTC_STEP_S = 0.1
PROGRESS_THRESHOLD_M = 5.0
COMFORT = {
    "min_lon_accel": -4.05,
    "max_lon_accel": 2.40,
    "max_abs_lat_accel": 4.89,
    "max_abs_jerk": 8.37,
    "max_abs_lon_jerk": 4.13,
    "max_abs_yaw_accel": 1.93,
    "max_abs_yaw_rate": 0.95,
}


@dataclass(frozen=True)
class AgentBoxes:
    """Other agents over the plan's steps, ego frame at planning time: ``poses`` (N, T, 3),
    ``velocities`` (N, T, 2), ``sizes`` (N, 2) length and width; NaN poses where an agent is absent."""

    poses: np.ndarray
    velocities: np.ndarray
    sizes: np.ndarray

    @staticmethod
    def none(steps: int) -> AgentBoxes:
        return AgentBoxes(np.zeros((0, steps, 3)), np.zeros((0, steps, 2)), np.zeros((0, 2)))


@dataclass(frozen=True)
class PdmScore:
    nc: float
    dac: float | None
    ttc: float
    ep: float
    c: float

    @property
    def pdms(self) -> float:
        return self.nc * (1.0 if self.dac is None else self.dac) * (5 * self.ttc + 5 * self.ep + 2 * self.c) / 12


def box_corners(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    """(4, 2) corners of a box centred at (x, y) with heading ``yaw``."""
    half = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * [length / 2, width / 2]
    rotation = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    return half @ rotation.T + [x, y]


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test for two convex quadrilaterals (4, 2)."""
    for polygon in (a, b):
        for k in range(4):
            edge = polygon[(k + 1) % 4] - polygon[k]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def _reach_m(length: float, width: float) -> float:
    """Half the diagonal of a box: no point of it is farther from its centre."""
    return 0.5 * float(np.hypot(length, width))


EGO_REACH_M = _reach_m(EGO_LENGTH_M, EGO_WIDTH_M)


def _ego_states(trajectory: Trajectory, speed_mps: float) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3) poses and (T,) speeds of the plan."""
    kinematics = trajectory.kinematics(speed_mps)
    return trajectory.poses_ego_frame, np.hypot(kinematics.longitudinal_velocity_mps, kinematics.lateral_velocity_mps)


def no_collision(trajectory: Trajectory, speed_mps: float, agents: AgentBoxes) -> float:
    poses, speeds = _ego_states(trajectory, speed_mps)
    score = 1.0
    for step, (pose, speed) in enumerate(zip(poses, speeds, strict=True)):
        ego = box_corners(*pose, EGO_LENGTH_M, EGO_WIDTH_M)
        for agent in range(len(agents.sizes)):
            other = agents.poses[agent, step]
            if np.isnan(other).any() or np.hypot(*(other[:2] - pose[:2])) > EGO_REACH_M + _reach_m(
                *agents.sizes[agent]
            ):
                continue  # too far apart to touch (a cheap bound before the polygon test)
            if not boxes_overlap(ego, box_corners(*other, *agents.sizes[agent])):
                continue
            if speed < STOPPED_SPEED_MPS:
                continue  # hit while standing: not the ego's fault
            relative = _in_frame(pose, other[:2])
            if relative[0] < -EGO_LENGTH_M / 4:
                continue  # hit from behind
            moving = np.hypot(*agents.velocities[agent, step]) >= STATIC_SPEED_MPS
            score = min(score, 0.0 if moving else 0.5)
    return score


def _in_frame(pose: np.ndarray, point: np.ndarray) -> np.ndarray:
    dx, dy = point - pose[:2]
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return np.array([c * dx + s * dy, -s * dx + c * dy])


def time_to_collision(trajectory: Trajectory, speed_mps: float, agents: AgentBoxes) -> float:
    poses, speeds = _ego_states(trajectory, speed_mps)
    offsets = np.arange(TTC_STEP_S, TTC_HORIZON_S + 1e-9, TTC_STEP_S)
    for step, (pose, speed) in enumerate(zip(poses, speeds, strict=True)):
        if speed < STOPPED_SPEED_MPS:
            continue
        heading = np.array([np.cos(pose[2]), np.sin(pose[2])])
        for agent in range(len(agents.sizes)):
            other = agents.poses[agent, step]
            if np.isnan(other).any() or _in_frame(pose, other[:2])[0] < 0.0:
                continue  # absent, or behind the ego
            closing_m = (speed + np.hypot(*agents.velocities[agent, step])) * TTC_HORIZON_S
            if np.hypot(*(other[:2] - pose[:2])) > closing_m + EGO_REACH_M + _reach_m(*agents.sizes[agent]):
                continue  # cannot meet within the horizon
            for dt in offsets:
                ego = box_corners(*(pose[:2] + heading * speed * dt), pose[2], EGO_LENGTH_M, EGO_WIDTH_M)
                moved = other[:2] + agents.velocities[agent, step] * dt
                if boxes_overlap(ego, box_corners(*moved, other[2], *agents.sizes[agent])):
                    return 0.0
    return 1.0


def drivable_area_compliance(trajectory: Trajectory, is_drivable) -> float | None:
    """``is_drivable(points (N, 2) ego frame) -> (N,) bool``, or None (no map: not scored)."""
    if is_drivable is None:
        return None
    corners = np.concatenate([box_corners(*pose, EGO_LENGTH_M, EGO_WIDTH_M) for pose in trajectory.poses_ego_frame])
    return float(np.all(is_drivable(corners)))


def path_progress_m(path: np.ndarray, point: np.ndarray) -> float:
    """Arc length along a polyline (M, 2) to the projection of ``point``."""
    segments = np.diff(path, axis=0)
    lengths = np.linalg.norm(segments, axis=1)
    starts = np.concatenate([[0.0], np.cumsum(lengths)])
    best, best_distance = 0.0, np.inf
    for k, (a, segment, length) in enumerate(zip(path[:-1], segments, lengths, strict=True)):
        t = 0.0 if length == 0 else np.clip((point - a) @ segment / length**2, 0.0, 1.0)
        distance = np.linalg.norm(a + t * segment - point)
        if distance < best_distance:
            best, best_distance = starts[k] + t * length, distance
    return float(best)


def ego_progress(trajectory: Trajectory, reference_path: np.ndarray) -> float:
    """``reference_path`` (M, 2), from the origin: e.g. the logged future path."""
    path = np.vstack([[0.0, 0.0], reference_path[:, :2]])
    planned = path_progress_m(path, trajectory.poses_ego_frame[-1, :2])
    reference = path_progress_m(path, path[-1])
    best = max(planned, reference)
    if best < PROGRESS_THRESHOLD_M:
        return 1.0
    return float(np.clip(planned / best, 0.0, 1.0))


def comfort(trajectory: Trajectory, speed_mps: float) -> float:
    kinematics = trajectory.kinematics(speed_mps)
    dt = trajectory.interval_s
    lon = kinematics.acceleration_mps2
    lat = kinematics.longitudinal_velocity_mps * kinematics.heading_rate_rps
    lon_jerk = np.gradient(lon, dt)
    jerk = np.hypot(lon_jerk, np.gradient(lat, dt))
    yaw_accel = np.gradient(kinematics.heading_rate_rps, dt)
    within = (
        lon.min() >= COMFORT["min_lon_accel"]
        and lon.max() <= COMFORT["max_lon_accel"]
        and np.abs(lat).max() <= COMFORT["max_abs_lat_accel"]
        and jerk.max() <= COMFORT["max_abs_jerk"]
        and np.abs(lon_jerk).max() <= COMFORT["max_abs_lon_jerk"]
        and np.abs(yaw_accel).max() <= COMFORT["max_abs_yaw_accel"]
        and np.abs(kinematics.heading_rate_rps).max() <= COMFORT["max_abs_yaw_rate"]
    )
    return float(within)


def pdm_score(
    trajectory: Trajectory,
    speed_mps: float,
    agents: AgentBoxes,
    reference_path: np.ndarray,
    is_drivable=None,
) -> PdmScore:
    return PdmScore(
        nc=no_collision(trajectory, speed_mps, agents),
        dac=drivable_area_compliance(trajectory, is_drivable),
        ttc=time_to_collision(trajectory, speed_mps, agents),
        ep=ego_progress(trajectory, reference_path),
        c=comfort(trajectory, speed_mps),
    )
