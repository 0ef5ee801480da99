"""A planned trajectory in the NAVSIM convention.

Future poses (x_m, y_m, yaw_rad) at a fixed interval, in the ego frame at the
input time (x forward, y left); the current pose (the origin) is not stored.
NAVSIM's default is 8 poses at 0.5 s, i.e. 4 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.se2 import wrap_angle
from latentvla_ros.core.validation import InputError, require_finite, require_shape

NAVSIM_NUM_POSES = 8
NAVSIM_INTERVAL_S = 0.5


@dataclass(frozen=True)
class TrajectoryKinematics:
    """Per-pose motion derived from the poses by finite differences, each (N,)."""

    longitudinal_velocity_mps: np.ndarray
    lateral_velocity_mps: np.ndarray
    acceleration_mps2: np.ndarray
    heading_rate_rps: np.ndarray


@dataclass(frozen=True)
class Trajectory:
    """``poses_ego_frame`` (N, 3) at times ``interval_s * (1..N)`` after the input stamp."""

    poses_ego_frame: np.ndarray
    interval_s: float = NAVSIM_INTERVAL_S

    def __post_init__(self) -> None:
        poses = require_finite("Trajectory.poses_ego_frame", self.poses_ego_frame)
        require_shape("Trajectory.poses_ego_frame", poses, (None, 3))
        if poses.shape[0] < 1:
            raise InputError("Trajectory.poses_ego_frame", "at least one pose", poses.shape)
        if not (np.isfinite(self.interval_s) and self.interval_s > 0.0):
            raise InputError("Trajectory.interval_s", "a positive time in seconds", self.interval_s)
        poses = poses.copy()
        poses[:, 2] = wrap_angle(poses[:, 2])
        poses.setflags(write=False)
        object.__setattr__(self, "poses_ego_frame", poses)

    @property
    def num_poses(self) -> int:
        return int(self.poses_ego_frame.shape[0])

    @property
    def times_s(self) -> np.ndarray:
        """(N,) time of each pose after the input stamp."""
        return self.interval_s * np.arange(1, self.num_poses + 1)

    def kinematics(self, initial_speed_mps: float | None = None) -> TrajectoryKinematics:
        """Velocities, acceleration and heading rate at each pose.

        The origin (t = 0, the current pose) is prepended so the first pose has
        a velocity too; ``initial_speed_mps`` (the ego speed now), when given,
        anchors the acceleration at t = 0.
        """
        dt_s = self.interval_s
        with_origin = np.vstack([np.zeros((1, 3)), self.poses_ego_frame])
        # Second-order ends are exact for constant acceleration, where a controller looks last.
        edge_order = 2 if len(with_origin) >= 3 else 1
        velocity_xy = np.gradient(with_origin[:, :2], dt_s, axis=0, edge_order=edge_order)
        if initial_speed_mps is not None:
            velocity_xy[0] = [initial_speed_mps, 0.0]
        yaw = np.unwrap(with_origin[:, 2])
        cos_yaw, sin_yaw = np.cos(yaw), np.sin(yaw)
        longitudinal = cos_yaw * velocity_xy[:, 0] + sin_yaw * velocity_xy[:, 1]
        lateral = -sin_yaw * velocity_xy[:, 0] + cos_yaw * velocity_xy[:, 1]
        acceleration = np.gradient(longitudinal, dt_s, edge_order=edge_order)
        heading_rate = np.gradient(yaw, dt_s, edge_order=edge_order)
        return TrajectoryKinematics(
            longitudinal_velocity_mps=longitudinal[1:],
            lateral_velocity_mps=lateral[1:],
            acceleration_mps2=acceleration[1:],
            heading_rate_rps=heading_rate[1:],
        )

    @staticmethod
    def constant_velocity(
        speed_mps: float,
        yaw_rate_rps: float = 0.0,
        num_poses: int = NAVSIM_NUM_POSES,
        interval_s: float = NAVSIM_INTERVAL_S,
    ) -> Trajectory:
        """Poses of a vehicle holding its speed and yaw rate (the constant-velocity baseline)."""
        times_s = interval_s * np.arange(1, num_poses + 1)
        yaw = yaw_rate_rps * times_s
        if abs(yaw_rate_rps) < 1e-6:
            x, y = speed_mps * times_s, np.zeros_like(times_s)
        else:
            radius_m = speed_mps / yaw_rate_rps
            x, y = radius_m * np.sin(yaw), radius_m * (1.0 - np.cos(yaw))
        return Trajectory(np.stack([x, y, yaw], axis=1), interval_s)
