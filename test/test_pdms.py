"""NAVSIM's PDM score: each sub-score's pass and fail on hand-built cases, and the formula."""

import numpy as np
import pytest

from latentvla_ros.core.trajectory import Trajectory
from latentvla_ros.evaluation.pdms import (
    AgentBoxes,
    PdmScore,
    comfort,
    drivable_area_compliance,
    ego_progress,
    no_collision,
    pdm_score,
    time_to_collision,
)

STRAIGHT = Trajectory.constant_velocity(10.0)  # 5 m every 0.5 s along x
STEPS = STRAIGHT.num_poses


def _agent(x: float, y: float, vx: float = 0.0, yaw: float = 0.0, moving_with_time: bool = True) -> AgentBoxes:
    """One 4.5 m x 2 m agent starting at (x, y) with velocity (vx, 0), at each 0.5 s step."""
    times = 0.5 * np.arange(1, STEPS + 1)
    xs = x + vx * times if moving_with_time else np.full(STEPS, x)
    poses = np.stack([xs, np.full(STEPS, y), np.full(STEPS, yaw)], axis=1)[None]
    velocities = np.tile([vx, 0.0], (1, STEPS, 1))
    return AgentBoxes(poses, velocities, np.array([[4.5, 2.0]]))


def test_no_collision_pass_and_fail():
    assert no_collision(STRAIGHT, 10.0, AgentBoxes.none(STEPS)) == 1.0
    assert no_collision(STRAIGHT, 10.0, _agent(20.0, 10.0)) == 1.0  # parked far to the left
    assert no_collision(STRAIGHT, 10.0, _agent(40.0, 0.0, vx=-10.0)) == 0.0  # an oncoming car in the lane
    assert no_collision(STRAIGHT, 10.0, _agent(20.0, 0.0)) == 0.5  # a static object straight ahead


def test_no_collision_is_not_at_fault_when_standing_or_hit_from_behind():
    standing = Trajectory(np.zeros((STEPS, 3)))
    assert no_collision(standing, 0.0, _agent(0.0, 0.0, vx=0.0)) == 1.0
    behind = _agent(-3.0, 0.0, vx=12.0)  # catches up with the ego from behind
    behind = AgentBoxes(behind.poses.copy(), behind.velocities, behind.sizes)
    behind.poses[0, :, 0] = STRAIGHT.poses_ego_frame[:, 0] - 3.5
    assert no_collision(STRAIGHT, 10.0, behind) == 1.0


def test_time_to_collision_pass_and_fail():
    assert time_to_collision(STRAIGHT, 10.0, AgentBoxes.none(STEPS)) == 1.0
    # A stopped car 8 m beyond the first pose: no overlap at any pose, but within 1 s at 10 m/s.
    blocker = _agent(5.0 + 8.0, 0.0, moving_with_time=False)
    assert time_to_collision(STRAIGHT, 10.0, blocker) == 0.0
    assert time_to_collision(STRAIGHT, 10.0, _agent(13.0, 8.0, moving_with_time=False)) == 1.0  # next lane


def test_drivable_area_compliance_pass_fail_and_unknown():
    def road(points: np.ndarray) -> np.ndarray:  # a straight road 8 m wide
        return np.abs(points[:, 1]) < 4.0

    assert drivable_area_compliance(STRAIGHT, road) == 1.0
    swerve = Trajectory(np.column_stack([5.0 * np.arange(1, 9), np.linspace(0, 10, 8), np.zeros(8)]))
    assert drivable_area_compliance(swerve, road) == 0.0
    assert drivable_area_compliance(STRAIGHT, None) is None


def test_ego_progress_relative_to_the_reference():
    reference = STRAIGHT.poses_ego_frame  # 40 m
    assert ego_progress(STRAIGHT, reference) == pytest.approx(1.0)
    half = Trajectory.constant_velocity(5.0)  # 20 m
    assert ego_progress(half, reference) == pytest.approx(0.5)
    creeping = Trajectory.constant_velocity(0.5)
    assert ego_progress(creeping, Trajectory.constant_velocity(0.4).poses_ego_frame) == 1.0  # both under 5 m


def test_comfort_pass_and_fail():
    assert comfort(STRAIGHT, 10.0) == 1.0
    times = 0.5 * np.arange(1, 9)
    hard_brake = Trajectory(np.column_stack([10.0 * times - 0.5 * 8.0 * times**2, np.zeros(8), np.zeros(8)]))
    assert comfort(hard_brake, 10.0) == 0.0  # -8 m/s^2 is beyond -4.05
    fast_turn = Trajectory.constant_velocity(10.0, yaw_rate_rps=1.2)
    assert comfort(fast_turn, 10.0) == 0.0  # yaw rate beyond 0.95 rad/s


def test_pdms_formula():
    assert PdmScore(nc=1.0, dac=1.0, ttc=1.0, ep=1.0, c=1.0).pdms == 1.0
    assert PdmScore(nc=1.0, dac=1.0, ttc=0.0, ep=0.5, c=1.0).pdms == pytest.approx((0 + 2.5 + 2) / 12)
    assert PdmScore(nc=0.5, dac=1.0, ttc=1.0, ep=1.0, c=0.0).pdms == pytest.approx(0.5 * 10 / 12)
    assert PdmScore(nc=1.0, dac=0.0, ttc=1.0, ep=1.0, c=1.0).pdms == 0.0
    assert PdmScore(nc=1.0, dac=None, ttc=1.0, ep=1.0, c=1.0).pdms == 1.0  # no map: DAC left out
    score = pdm_score(STRAIGHT, 10.0, _agent(20.0, 0.0), STRAIGHT.poses_ego_frame)
    assert score.nc == 0.5 and score.ttc == 0.0 and score.pdms == pytest.approx(0.5 * (0 + 5 + 2) / 12)
