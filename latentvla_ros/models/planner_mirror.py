"""Left-right mirrored planner samples: a training augmentation (off in the recipe).

A drive seen in a mirror is another drivable drive: the camera frame flipped left-right,
every lateral quantity negated (the ego's vy, ay and yaw rate; y and yaw of the future
poses), the LEFT and RIGHT commands swapped, the BEV raster's columns reversed (the ego
sits on its centre column, so column i holds -y where it held y). Traffic then keeps
left, which the fresh logs never show; the planner still sees twice as many scenes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.models.planner_features import PlannerSamples

# Ego status (vx, vy, ax, ay, yaw rate): the lateral components change sign.
EGO_STATUS_MIRROR = np.array([1.0, -1.0, 1.0, -1.0, -1.0], dtype=np.float32)
POSE_MIRROR = np.array([1.0, -1.0, -1.0], dtype=np.float32)  # x, y, yaw


def mirrored_commands(commands: np.ndarray) -> np.ndarray:
    swapped = np.asarray(commands).copy()
    swapped[commands == DrivingCommand.LEFT] = DrivingCommand.RIGHT
    swapped[commands == DrivingCommand.RIGHT] = DrivingCommand.LEFT
    return swapped


def mirrored_samples(samples: PlannerSamples) -> PlannerSamples:
    """The same samples seen in a mirror. Images and BEV rasters are reversed views, not
    copies; the teacher's outputs are dropped (they answered the unmirrored frames)."""
    return replace(
        samples,
        images=samples.images[:, :, ::-1],
        ego_status=samples.ego_status * EGO_STATUS_MIRROR,
        commands=mirrored_commands(samples.commands),
        trajectories=samples.trajectories * POSE_MIRROR,
        bev=samples.bev[..., ::-1],
        teacher=None,
    )
