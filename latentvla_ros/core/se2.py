"""Planar rigid transforms on poses stored as (..., 3) arrays of x_m, y_m, yaw_rad.

Frames follow ROS REP 103: x forward, y left, yaw counter-clockwise.
"""

from __future__ import annotations

import numpy as np


def wrap_angle(angle_rad: np.ndarray | float) -> np.ndarray:
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(angle_rad) + np.pi) % (2.0 * np.pi) - np.pi


def relative_poses(origin: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Express ``poses`` (..., 3), given in a world frame, in the frame of ``origin`` (3,)."""
    origin = np.asarray(origin, dtype=np.float64)
    poses = np.asarray(poses, dtype=np.float64)
    cos_yaw, sin_yaw = np.cos(origin[2]), np.sin(origin[2])
    dx = poses[..., 0] - origin[0]
    dy = poses[..., 1] - origin[1]
    return np.stack(
        [cos_yaw * dx + sin_yaw * dy, -sin_yaw * dx + cos_yaw * dy, wrap_angle(poses[..., 2] - origin[2])],
        axis=-1,
    )


def absolute_poses(origin: np.ndarray, poses_in_origin: np.ndarray) -> np.ndarray:
    """Inverse of :func:`relative_poses`: poses (..., 3) in ``origin``'s frame to the world frame."""
    origin = np.asarray(origin, dtype=np.float64)
    poses_in_origin = np.asarray(poses_in_origin, dtype=np.float64)
    cos_yaw, sin_yaw = np.cos(origin[2]), np.sin(origin[2])
    x = poses_in_origin[..., 0]
    y = poses_in_origin[..., 1]
    return np.stack(
        [
            origin[0] + cos_yaw * x - sin_yaw * y,
            origin[1] + sin_yaw * x + cos_yaw * y,
            wrap_angle(poses_in_origin[..., 2] + origin[2]),
        ],
        axis=-1,
    )
