"""Message <-> core conversions, on real generated message objects."""

import math

import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from latentvla_ros.msg import LatentActions as LatentActionsMsg
from latentvla_ros.msg import PlannedTrajectory
from nav_msgs.msg import Odometry
from visualization_msgs.msg import Marker

from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.core.latent_actions import LatentActions, LatentSource
from latentvla_ros.core.trajectory import Trajectory
from latentvla_ros.core.validation import InputError
from latentvla_ros.ros import conversions


def _ego_state(**overrides):
    fields = {
        "stamp_ns": 12_345_678_901,
        "x_m": 10.5,
        "y_m": -3.25,
        "yaw_rad": 2.9,
        "velocity_x_mps": 7.5,
        "velocity_y_mps": 0.25,
        "yaw_rate_rps": -0.2,
    }
    fields.update(overrides)
    return EgoState(**fields)


def test_time_round_trip_and_split():
    stamp = conversions.ns_to_time(12_345_678_901)
    assert (stamp.sec, stamp.nanosec) == (12, 345_678_901)
    assert conversions.time_to_ns(stamp) == 12_345_678_901
    with pytest.raises(InputError, match="stamp"):
        conversions.ns_to_time(-1)


@pytest.mark.parametrize("yaw", [0.0, 0.3, -1.2, math.pi - 1e-6, -math.pi + 1e-6, 3.0])
def test_quaternion_yaw_round_trip(yaw):
    quaternion = conversions.quaternion_from_yaw(yaw)
    assert math.isclose(quaternion.w**2 + quaternion.x**2 + quaternion.y**2 + quaternion.z**2, 1.0, rel_tol=1e-12)
    assert conversions.yaw_from_quaternion(quaternion, "q") == pytest.approx(yaw, abs=1e-9)


def test_quaternion_not_unit_is_normalized():
    quaternion = conversions.quaternion_from_yaw(0.7)
    quaternion.w, quaternion.z = quaternion.w * 3, quaternion.z * 3
    assert conversions.yaw_from_quaternion(quaternion, "q") == pytest.approx(0.7)


def test_odometry_round_trip():
    state = _ego_state()
    odometry = conversions.ego_state_to_odometry(state)
    assert isinstance(odometry, Odometry)
    assert (odometry.header.frame_id, odometry.child_frame_id) == ("map", "base_link")
    back = conversions.odometry_to_ego_state(odometry)
    assert back.stamp_ns == state.stamp_ns
    for name in ("x_m", "y_m", "yaw_rad", "velocity_x_mps", "velocity_y_mps", "yaw_rate_rps"):
        assert getattr(back, name) == pytest.approx(getattr(state, name), abs=1e-9), name


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (
            lambda o: setattr(o.pose.pose.orientation, "w", 0.0),
            "Odometry.pose.pose.orientation: expected a unit quaternion",
        ),
        (
            lambda o: setattr(o.pose.pose.orientation, "z", float("nan")),
            "Odometry.pose.pose.orientation: expected finite",
        ),
        (lambda o: setattr(o.pose.pose.position, "x", float("inf")), "Odometry.pose.pose.position: expected finite"),
        (lambda o: setattr(o.twist.twist.linear, "x", float("nan")), "Odometry.twist.twist.linear: expected finite"),
        (lambda o: setattr(o.twist.twist.angular, "z", float("-inf")), "Odometry.twist.twist.angular: expected finite"),
        (lambda o: setattr(o.header, "frame_id", "odom"), "Odometry.header.frame_id: expected frame 'map', got 'odom'"),
        (
            lambda o: setattr(o, "child_frame_id", "imu"),
            "Odometry.child_frame_id: expected frame 'base_link', got 'imu'",
        ),
        (lambda o: setattr(o.header, "frame_id", ""), "Odometry.header.frame_id: expected frame 'map', got ''"),
    ],
)
def test_malformed_odometry_names_field_and_expectation(corrupt, message):
    odometry = conversions.ego_state_to_odometry(_ego_state(yaw_rad=0.0))
    if "unit quaternion" in message:
        odometry.pose.pose.orientation.z = 0.0  # yaw 0 has w = 1, z = 0: zero both
    corrupt(odometry)
    with pytest.raises(InputError) as error:
        conversions.odometry_to_ego_state(odometry)
    assert str(error.value).startswith(message)


def test_odometry_frames_are_configurable():
    odometry = conversions.ego_state_to_odometry(_ego_state(frame_id="odom", child_frame_id="ego"))
    state = conversions.odometry_to_ego_state(odometry, expected_frame_id="odom", expected_child_frame_id="ego")
    assert (state.frame_id, state.child_frame_id) == ("odom", "ego")


def _braking_left_turn():
    times_s = np.arange(1, 9) * 0.5
    yaw = 0.1 * times_s
    distance = 10.0 * times_s - 0.5 * 1.5 * times_s**2
    return Trajectory(np.column_stack([distance * np.cos(yaw / 2), distance * np.sin(yaw / 2), yaw]))


def test_planned_trajectory_round_trip_and_fields():
    trajectory = _braking_left_turn()
    message = conversions.trajectory_to_msg(
        trajectory,
        stamp_ns=3_500_000_000,
        mode=PlannedTrajectory.MODE_DISTILLED,
        latent_tokens=[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8],
        model_version="1.2",
        initial_speed_mps=10.0,
    )
    assert message.header.frame_id == "base_link"
    assert (message.header.stamp.sec, message.header.stamp.nanosec) == (3, 500_000_000)
    assert message.mode == PlannedTrajectory.MODE_DISTILLED
    assert list(message.latent_tokens) == [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]
    assert message.model_version == "1.2"
    assert [conversions.duration_to_seconds(p.time_from_start) for p in message.points] == pytest.approx(
        np.arange(1, 9) * 0.5
    )
    first = message.points[0]
    assert first.pose.position.x == pytest.approx(trajectory.poses_ego_frame[0, 0])
    assert 8.0 < first.longitudinal_velocity_mps < 10.0
    assert all(p.acceleration_mps2 < 0 for p in message.points)
    assert all(p.heading_rate_rps == pytest.approx(0.1, abs=1e-6) for p in message.points)

    back = conversions.trajectory_from_msg(message)
    np.testing.assert_allclose(back.poses_ego_frame, trajectory.poses_ego_frame, atol=1e-9)
    assert back.interval_s == pytest.approx(0.5)


def test_planned_trajectory_rejects_bad_input():
    message = conversions.trajectory_to_msg(Trajectory.constant_velocity(5.0), 0, PlannedTrajectory.MODE_EXPERT)
    with pytest.raises(InputError, match=r"PlannedTrajectory.header.frame_id: expected frame 'base_link', got 'map'"):
        message.header.frame_id = "map"
        conversions.trajectory_from_msg(message)
    message.header.frame_id = "base_link"
    message.points[3].time_from_start = Duration(sec=7)
    with pytest.raises(InputError, match=r"time_from_start: expected a uniform grid"):
        conversions.trajectory_from_msg(message)
    message.points[3].time_from_start = Duration(sec=2)
    message.points[2].pose.orientation.w = float("nan")
    with pytest.raises(InputError, match=r"PlannedTrajectory.points\[2\].pose.orientation: expected finite"):
        conversions.trajectory_from_msg(message)
    with pytest.raises(InputError, match=r"PlannedTrajectory.points: expected at least one point"):
        conversions.trajectory_from_msg(PlannedTrajectory(header=message.header))
    with pytest.raises(InputError, match=r"PlannedTrajectory.mode"):
        conversions.trajectory_to_msg(Trajectory.constant_velocity(5.0), 0, mode=7)


def test_path_starts_at_origin_and_matches_poses():
    trajectory = _braking_left_turn()
    path = conversions.trajectory_to_path(trajectory, stamp_ns=42, frame_id="base_link")
    assert path.header.frame_id == "base_link" and len(path.poses) == 9
    assert (path.poses[0].pose.position.x, path.poses[0].pose.position.y) == (0.0, 0.0)
    for pose_stamped, expected in zip(path.poses[1:], trajectory.poses_ego_frame, strict=True):
        assert pose_stamped.header.frame_id == "base_link"
        yaw = conversions.yaw_from_quaternion(pose_stamped.pose.orientation, "path")
        assert [pose_stamped.pose.position.x, pose_stamped.pose.position.y, yaw] == pytest.approx(expected.tolist())


def test_markers_delete_all_first():
    markers = conversions.trajectory_to_markers(_braking_left_turn(), 42, label="hold speed").markers
    assert markers[0].action == Marker.DELETEALL
    assert [m.type for m in markers[1:]] == [Marker.LINE_STRIP, Marker.SPHERE_LIST, Marker.TEXT_VIEW_FACING]
    assert len(markers[1].points) == 9 and len(markers[2].points) == 8
    assert markers[3].text == "hold speed"
    assert all(m.header.frame_id == "base_link" for m in markers)
    assert len({(m.ns, m.id) for m in markers[1:]}) == 3


def _latents(embedding=True):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(12, 16))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return LatentActions(
        stamp_ns=7_000_000_123,
        source=LatentSource.TEACHER,
        tokens=probabilities.argmax(axis=1),
        probabilities=probabilities,
        step_period_s=0.5,
        model_version="2.1",
        embedding=rng.normal(size=(12, 8)) if embedding else None,
        frame_id="front_camera",
    )


@pytest.mark.parametrize("with_embedding", [True, False])
def test_latent_actions_round_trip(with_embedding):
    actions = _latents(with_embedding)
    message = conversions.latent_actions_to_msg(actions)
    assert isinstance(message, LatentActionsMsg)
    assert message.source == LatentActionsMsg.SOURCE_TEACHER and message.codebook_size == 16
    assert len(message.probabilities) == 12 * 16
    assert message.embedding_dim == (8 if with_embedding else 0)
    back = conversions.latent_actions_from_msg(message)
    assert back.stamp_ns == actions.stamp_ns and back.frame_id == "front_camera"
    assert back.source == LatentSource.TEACHER and back.model_version == "2.1"
    np.testing.assert_array_equal(back.tokens, actions.tokens)
    np.testing.assert_allclose(back.probabilities, actions.probabilities, rtol=1e-6)
    if with_embedding:
        np.testing.assert_allclose(back.embedding, actions.embedding, rtol=1e-6)
    else:
        assert back.embedding is None


def test_malformed_latent_actions_message():
    message = conversions.latent_actions_to_msg(_latents())
    short = conversions.latent_actions_to_msg(_latents())
    short.probabilities = short.probabilities[:-1]
    with pytest.raises(InputError, match=r"LatentActions.probabilities: expected len\(tokens\) \* codebook_size"):
        conversions.latent_actions_from_msg(short)
    message.embedding_dim = 7
    with pytest.raises(InputError, match=r"LatentActions.embedding"):
        conversions.latent_actions_from_msg(message)
    message.embedding_dim = 8
    message.source = 9
    with pytest.raises(InputError, match=r"LatentActions.source"):
        conversions.latent_actions_from_msg(message)
    message.source = 0
    message.codebook_size = 0
    with pytest.raises(InputError, match=r"LatentActions.codebook_size"):
        conversions.latent_actions_from_msg(message)
    nan_message = conversions.latent_actions_to_msg(_latents())
    nan_message.probabilities[0] = float("nan")
    with pytest.raises(InputError, match=r"LatentActions.probabilities: expected finite"):
        conversions.latent_actions_from_msg(nan_message)
