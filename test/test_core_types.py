"""The ROS-free core types: trajectory, ego state, latent actions, SE(2) helpers."""

import math

import numpy as np
import pytest

from latentvla_ros.core.driving_command import DrivingCommand
from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.core.latent_actions import LatentActions, LatentSource
from latentvla_ros.core.se2 import absolute_poses, relative_poses, wrap_angle
from latentvla_ros.core.trajectory import Trajectory
from latentvla_ros.core.validation import InputError


def test_se2_relative_then_absolute_is_identity():
    rng = np.random.default_rng(0)
    origin = np.array([3.0, -2.0, 2.5])
    poses = np.column_stack([rng.normal(size=(20, 2)) * 10, rng.uniform(-np.pi, np.pi, 20)])
    back = absolute_poses(origin, relative_poses(origin, poses))
    np.testing.assert_allclose(back[:, :2], poses[:, :2], atol=1e-9)
    np.testing.assert_allclose(wrap_angle(back[:, 2] - poses[:, 2]), 0.0, atol=1e-9)


def test_se2_relative_pose_of_point_ahead_and_left():
    # Facing +y in the world: a point 5 m further along +y is 5 m ahead (x) in the ego frame.
    origin = np.array([1.0, 1.0, math.pi / 2])
    np.testing.assert_allclose(relative_poses(origin, np.array([1.0, 6.0, math.pi / 2])), [5.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(
        relative_poses(origin, np.array([-1.0, 1.0, math.pi])), [0.0, 2.0, math.pi / 2], atol=1e-12
    )


def test_constant_velocity_trajectory_follows_navsim_convention():
    straight = Trajectory.constant_velocity(speed_mps=10.0)
    assert straight.num_poses == 8
    np.testing.assert_allclose(straight.times_s, np.arange(1, 9) * 0.5)
    np.testing.assert_allclose(straight.poses_ego_frame[:, 0], 10.0 * straight.times_s)
    np.testing.assert_allclose(straight.poses_ego_frame[:, 1:], 0.0)

    left_turn = Trajectory.constant_velocity(speed_mps=10.0, yaw_rate_rps=0.2)
    # Turning left: y grows positive, heading grows at the yaw rate, distance from origin <= arc length.
    assert np.all(left_turn.poses_ego_frame[:, 1] > 0)
    np.testing.assert_allclose(left_turn.poses_ego_frame[:, 2], 0.2 * left_turn.times_s)
    assert np.all(np.hypot(*left_turn.poses_ego_frame[:, :2].T) <= 10.0 * left_turn.times_s + 1e-9)


def test_trajectory_kinematics_of_constant_turn():
    trajectory = Trajectory.constant_velocity(speed_mps=8.0, yaw_rate_rps=0.3)
    kinematics = trajectory.kinematics(initial_speed_mps=8.0)
    # Finite differences of a circle under-estimate speed by a chord factor; 1 % is plenty.
    np.testing.assert_allclose(kinematics.longitudinal_velocity_mps, 8.0, rtol=1e-2)
    np.testing.assert_allclose(kinematics.heading_rate_rps, 0.3, rtol=1e-9)
    np.testing.assert_allclose(kinematics.lateral_velocity_mps, 0.0, atol=0.1)


def test_trajectory_kinematics_of_braking():
    times_s = np.arange(1, 9) * 0.5
    speed0, decel = 12.0, 2.0
    x = speed0 * times_s - 0.5 * decel * times_s**2
    trajectory = Trajectory(np.column_stack([x, np.zeros(8), np.zeros(8)]))
    kinematics = trajectory.kinematics(initial_speed_mps=speed0)
    np.testing.assert_allclose(kinematics.longitudinal_velocity_mps, speed0 - decel * times_s, atol=1e-9)
    np.testing.assert_allclose(kinematics.acceleration_mps2, -decel, atol=1e-9)


@pytest.mark.parametrize(
    ("poses", "field_fragment"),
    [
        (np.zeros((8, 2)), "shape (N, 3)"),
        (np.zeros((0, 3)), "at least one pose"),
        (np.full((8, 3), np.nan), "finite"),
        (np.array([[1.0, 0.0, np.inf]]), "finite"),
    ],
)
def test_trajectory_rejects_malformed_poses(poses, field_fragment):
    with pytest.raises(InputError, match=r"Trajectory.poses_ego_frame") as error:
        Trajectory(poses)
    assert field_fragment in str(error.value)


def test_trajectory_rejects_bad_interval_and_is_read_only():
    with pytest.raises(InputError, match="interval_s"):
        Trajectory(np.zeros((8, 3)), interval_s=0.0)
    trajectory = Trajectory(np.zeros((8, 3)))
    with pytest.raises(ValueError):
        trajectory.poses_ego_frame[0, 0] = 1.0


def test_ego_state_acceleration_from_previous_state():
    previous = EgoState(stamp_ns=1_000_000_000, x_m=0.0, y_m=0.0, yaw_rad=0.0, velocity_x_mps=10.0)
    current = EgoState(stamp_ns=1_500_000_000, x_m=5.0, y_m=0.0, yaw_rad=0.0, velocity_x_mps=11.0)
    assert current.with_acceleration_from(previous).acceleration_x_mps2 == pytest.approx(2.0)
    # Turning at constant speed: no longitudinal acceleration, centripetal lateral acceleration.
    turned = EgoState(stamp_ns=1_500_000_000, x_m=5.0, y_m=0.0, yaw_rad=0.05, velocity_x_mps=10.0, yaw_rate_rps=0.1)
    accelerations = turned.with_acceleration_from(previous)
    assert accelerations.acceleration_x_mps2 == pytest.approx(0.0, abs=0.03)
    assert accelerations.acceleration_y_mps2 == pytest.approx(10.0 * 0.1, rel=0.01)
    with pytest.raises(InputError, match="stamp_ns"):
        previous.with_acceleration_from(current)


def test_ego_state_rejects_nan_and_reports_status_vector():
    with pytest.raises(InputError, match=r"EgoState.velocity_x_mps"):
        EgoState(stamp_ns=0, x_m=0.0, y_m=0.0, yaw_rad=0.0, velocity_x_mps=float("nan"))
    state = EgoState(stamp_ns=0, x_m=0, y_m=0, yaw_rad=0, velocity_x_mps=3.0, velocity_y_mps=4.0, yaw_rate_rps=0.1)
    assert state.speed_mps == pytest.approx(5.0)
    np.testing.assert_allclose(state.status_vector(), [3.0, 4.0, 0.0, 0.0, 0.1], rtol=1e-6)


def _uniform_latents(**overrides):
    fields = {
        "stamp_ns": 5,
        "source": LatentSource.STUDENT,
        "tokens": np.arange(12) % 16,
        "probabilities": np.full((12, 16), 1 / 16),
        "step_period_s": 0.5,
        "model_version": "1.0",
    }
    fields.update(overrides)
    return LatentActions(**fields)


def test_latent_actions_valid_and_invalid():
    actions = _uniform_latents(embedding=np.ones((12, 4)))
    assert (actions.horizon, actions.codebook_size) == (12, 16)
    with pytest.raises(InputError, match=r"LatentActions.tokens: expected code ids in \[0, 16\)"):
        _uniform_latents(tokens=np.full(12, 16))
    with pytest.raises(InputError, match=r"LatentActions.tokens: expected shape"):
        _uniform_latents(tokens=np.zeros(11, dtype=int))
    with pytest.raises(InputError, match="rows summing to 1"):
        _uniform_latents(probabilities=np.full((12, 16), 0.5))
    with pytest.raises(InputError, match=r"LatentActions.probabilities: expected finite"):
        _uniform_latents(probabilities=np.full((12, 16), np.nan))
    with pytest.raises(InputError, match=r"LatentActions.embedding: expected shape"):
        _uniform_latents(embedding=np.ones((11, 4)))
    with pytest.raises(InputError, match="integer code ids"):
        _uniform_latents(tokens=np.zeros(12))


def test_driving_command_one_hot_order_matches_navsim():
    assert DrivingCommand.LEFT.one_hot().tolist() == [1, 0, 0, 0]
    assert DrivingCommand.UNKNOWN.one_hot().tolist() == [0, 0, 0, 1]


def test_constant_velocity_planner_holds_speed_and_yaw_rate():
    from latentvla_ros.planning.interface import ConstantVelocityPlanner, PlannerInput

    ego = EgoState(stamp_ns=0, x_m=5.0, y_m=1.0, yaw_rad=0.3, velocity_x_mps=8.0, yaw_rate_rps=0.1)
    trajectory = ConstantVelocityPlanner().compute_trajectory(PlannerInput(stamp_ns=0, ego_state=ego))
    expected = Trajectory.constant_velocity(8.0, 0.1)
    np.testing.assert_allclose(trajectory.poses_ego_frame, expected.poses_ego_frame)
    # On the circle of radius v / w: forward (v / w) sin(w t), left (v / w)(1 - cos(w t)) at t = 4 s.
    assert trajectory.poses_ego_frame[-1, :2].tolist() == pytest.approx([80.0 * np.sin(0.4), 80.0 * (1 - np.cos(0.4))])
