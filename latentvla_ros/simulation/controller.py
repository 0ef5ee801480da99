"""Trajectory tracking: pure pursuit for steering, PID on speed with feed-forward.

This is the vehicle-side controller that follows a ``PlannedTrajectory``:
the expert's in data collection, the LatentVLA planner's in closed loop.
The trajectory is given in the ego frame at its stamp; the tracker anchors
it in the map frame with the ego pose at that stamp, so a late trajectory
is still followed where it was meant to go.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.core.se2 import absolute_poses, relative_poses
from latentvla_ros.core.trajectory import Trajectory


@dataclass(frozen=True)
class TrackerConfig:
    wheelbase_m: float = 5.0  # highway-env's bicycle model: heading rate = v sin(beta) / (L / 2)
    lookahead_time_s: float = 0.9
    min_lookahead_m: float = 4.0
    max_lookahead_m: float = 25.0
    speed_gain: float = 1.2
    speed_integral_gain: float = 0.1
    speed_preview_s: float = 0.3
    max_steering_rad: float = 0.6


@dataclass
class TrackedTrajectory:
    """A trajectory anchored in the map frame: poses (N+1, 3) from t = 0; times, speeds, accelerations (N+1,)."""

    stamp_ns: int
    poses_map: np.ndarray
    times_s: np.ndarray
    speeds_mps: np.ndarray
    accelerations_mps2: np.ndarray


class TrajectoryTracker:
    """``set_trajectory`` when a plan arrives; ``command`` every control step."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.reference: TrackedTrajectory | None = None
        self._speed_error_integral = 0.0

    def reset(self) -> None:
        self.reference = None
        self._speed_error_integral = 0.0

    def set_trajectory(self, trajectory: Trajectory, ego_at_stamp: EgoState) -> None:
        """Anchor ``trajectory`` (ego frame at ``ego_at_stamp``) in the map frame."""
        poses = np.vstack([np.zeros((1, 3)), trajectory.poses_ego_frame])
        times = np.concatenate([[0.0], trajectory.times_s])
        kinematics = trajectory.kinematics(ego_at_stamp.speed_mps)
        speeds = np.concatenate([[ego_at_stamp.speed_mps], kinematics.longitudinal_velocity_mps])
        accelerations = np.gradient(speeds, times)
        self.reference = TrackedTrajectory(
            ego_at_stamp.stamp_ns, absolute_poses(ego_at_stamp.pose, poses), times, speeds, accelerations
        )

    def command(self, ego: EgoState, dt_s: float) -> tuple[float, float]:
        """(acceleration_mps2, steering_rad) for the current ego state; brake if no trajectory."""
        config = self.config
        if self.reference is None:
            return -3.0, 0.0
        reference = self.reference
        elapsed_s = (ego.stamp_ns - reference.stamp_ns) * 1e-9
        target_speed = float(np.interp(elapsed_s + config.speed_preview_s, reference.times_s, reference.speeds_mps))
        feed_forward = float(np.interp(elapsed_s, reference.times_s, reference.accelerations_mps2))
        speed_error = target_speed - ego.speed_mps
        self._speed_error_integral = float(np.clip(self._speed_error_integral + speed_error * dt_s, -5.0, 5.0))
        acceleration = (
            feed_forward + config.speed_gain * speed_error + config.speed_integral_gain * self._speed_error_integral
        )
        upcoming = reference.speeds_mps[(reference.times_s >= elapsed_s) & (reference.times_s <= elapsed_s + 1.5)]
        plan_stays_stopped = upcoming.size == 0 or float(upcoming.max()) < 0.3
        if plan_stays_stopped and ego.speed_mps < 0.5:
            acceleration = min(acceleration, -1.0)  # hold the car at a standstill
        steering = self._pure_pursuit(ego, reference)
        return float(acceleration), float(steering)

    def _pure_pursuit(self, ego: EgoState, reference: TrackedTrajectory) -> float:
        config = self.config
        dense = _densify(reference.poses_map[:, :2], spacing_m=0.25)
        if len(dense) < 2:
            return 0.0  # a standstill plan: keep the wheels straight
        # Continue straight past the end so a lookahead point always exists.
        direction = (dense[-1] - dense[-2]) / np.linalg.norm(dense[-1] - dense[-2])
        extension = dense[-1] + np.arange(1, int(config.max_lookahead_m / 0.25) + 1)[:, None] * 0.25 * direction
        dense = np.vstack([dense, extension])
        in_ego = relative_poses(ego.pose, np.column_stack([dense, np.zeros(len(dense))]))[:, :2]
        ahead = in_ego[int(np.argmin(np.linalg.norm(in_ego, axis=1))) :]
        lookahead = float(
            np.clip(config.lookahead_time_s * ego.speed_mps, config.min_lookahead_m, config.max_lookahead_m)
        )
        beyond = np.nonzero(np.linalg.norm(ahead, axis=1) >= lookahead)[0]
        target = ahead[beyond[0]] if len(beyond) else ahead[-1]
        distance_sq = float(target @ target)
        if distance_sq < 1e-6:
            return 0.0
        curvature = 2.0 * target[1] / distance_sq
        # highway-env: heading rate = v sin(beta) / (L/2) with tan(beta) = tan(delta) / 2.
        beta = np.arcsin(np.clip(curvature * config.wheelbase_m / 2.0, -1.0, 1.0))
        steering = np.arctan(2.0 * np.tan(beta))
        return float(np.clip(steering, -config.max_steering_rad, config.max_steering_rad))


def _densify(points: np.ndarray, spacing_m: float) -> np.ndarray:
    """Resample a polyline (N, 2) at roughly ``spacing_m``; drops repeated points."""
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    keep = np.concatenate([[True], steps > 1e-6])
    points = points[keep]
    if len(points) < 2:
        return points
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    samples = np.arange(0.0, arc[-1] + 1e-9, spacing_m)
    return np.column_stack([np.interp(samples, arc, points[:, 0]), np.interp(samples, arc, points[:, 1])])
