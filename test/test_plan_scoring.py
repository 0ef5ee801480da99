"""Scoring recorded plans against what the bag shows happened next: ADE/FDE by hand,
unscored plans past the log's end, PDMS from logged agents, wrong types in one line."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")

from latentvla_ros.msg import PlannedTrajectory

from latentvla_ros import topics
from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.core.trajectory import Trajectory
from latentvla_ros.data.bag_io import BagError, BagWriter
from latentvla_ros.evaluation.plan_scoring import ScoringTopics, score_plans
from latentvla_ros.ros import conversions
from latentvla_ros.simulation.agents import AgentState

SPEED = 10.0  # the logged ego drives straight along x at 10 m/s for 10 s, odometry at 10 Hz


def _write_bag(path, plans: dict[float, Trajectory], agents: list[AgentState] | None = None, odometry="/odom"):
    with BagWriter(path) as bag:
        for k in range(101):
            stamp = 1_000_000_000 + k * 100_000_000
            ego = EgoState(stamp, SPEED * k * 0.1, 0.0, 0.0, SPEED)
            bag.write(odometry, stamp, conversions.ego_state_to_odometry(ego))
            if agents is not None:
                bag.write(topics.GROUND_TRUTH_AGENTS, stamp, conversions.agents_to_msg(agents, stamp))
        for time_s, plan in plans.items():
            stamp = 1_000_000_000 + round(time_s * 1e9)
            message = conversions.trajectory_to_msg(
                plan, stamp, PlannedTrajectory.MODE_DISTILLED, initial_speed_mps=SPEED
            )
            bag.write(topics.TRAJECTORY, stamp, message)
    return path


def _shifted(lateral_m: float) -> Trajectory:
    poses = Trajectory.constant_velocity(SPEED).poses_ego_frame.copy()
    poses[:, 1] += lateral_m
    return Trajectory(poses)


def test_ade_fde_against_the_logged_future_and_unscored_past_the_end(tmp_path):
    bag = _write_bag(
        tmp_path / "bag",
        {
            1.0: Trajectory.constant_velocity(SPEED),
            2.0: _shifted(1.0),
            3.0: Trajectory.constant_velocity(5.0),
            8.0: _shifted(0.0),
        },
    )
    scores = score_plans(bag, ScoringTopics(odometry="/odom"))
    assert scores.unscored == 1  # t = 8 s: its 4 s future runs past the 10 s log
    exact, shifted, slow = scores.rows
    assert exact["ade_4s"] == pytest.approx(0.0, abs=1e-6)
    assert shifted["ade_1s"] == pytest.approx(1.0) and shifted["fde_4s"] == pytest.approx(1.0)
    # Half the speed: at k * 0.5 s the plan is 2.5 k m short; FDE@4s = 20 m, ADE@4s = mean of 2.5 k.
    assert slow["fde_4s"] == pytest.approx(20.0) and slow["ade_4s"] == pytest.approx(2.5 * 4.5)
    assert np.isnan(exact["pdms"])  # no agents logged: PDMS not scored, not 0
    summary = scores.summary()
    assert summary["plans"] == 3 and summary["pdms"] is None
    assert summary["ade_1s"] == pytest.approx((0.0 + 1.0 + np.mean([2.5, 5.0])) / 3, abs=1e-4)


def test_pdms_from_logged_agents(tmp_path):
    # A parked car 60 m ahead of the ego's start, in its lane: driving on at 10 m/s from
    # t = 2 s (x = 20 m) reaches it within 4 s; braking to a stop 10 m short does not.
    parked = AgentState(7, 60.0, 0.0, 0.0, 0.0, 0.0, 4.5, 2.0)
    stop = np.array([[min(SPEED * t - SPEED / 10.0 * t * t, 25.0), 0.0, 0.0] for t in 0.5 * np.arange(1, 9)])
    bag = _write_bag(tmp_path / "bag", {2.0: Trajectory.constant_velocity(SPEED), 2.5: Trajectory(stop)}, [parked])
    on, braking = score_plans(bag, ScoringTopics(odometry="/odom")).rows
    assert on["nc"] == 0.5 and on["ttc"] == 0.0  # at fault with a static object, heading into it
    assert on["pdms"] == pytest.approx(0.5 * (5 * 0.0 + 5 * 1.0 + 2 * 1.0) / 12)
    assert braking["nc"] == 1.0 and braking["pdms"] > 0.0
    assert np.isnan(on["dac"])  # no map in the bag: DAC left out


def test_wrong_typed_odometry_is_one_line(tmp_path):
    with BagWriter(tmp_path / "bag") as bag:
        bag.write("/odom", 1, conversions.driving_command_to_msg(0, 1))
    with pytest.raises(BagError, match="/odom is latentvla_ros/msg/DrivingCommand, expected nav_msgs/msg/Odometry"):
        score_plans(tmp_path / "bag", ScoringTopics(odometry="/odom"))


def test_a_future_across_an_episode_restart_is_unscored(tmp_path):
    """The simulator's next episode teleports the ego: no plan is scored against that jump."""
    with BagWriter(tmp_path / "bag") as bag:
        for k in range(101):
            stamp = 1_000_000_000 + k * 100_000_000
            x = SPEED * k * 0.1 + (500.0 if k >= 50 else 0.0)  # restart 500 m on at t = 5 s
            bag.write("/odom", stamp, conversions.ego_state_to_odometry(EgoState(stamp, x, 0.0, 0.0, SPEED)))
        for time_s in (0.5, 2.0, 5.5):
            stamp = 1_000_000_000 + round(time_s * 1e9)
            plan = Trajectory.constant_velocity(SPEED)
            bag.write(topics.TRAJECTORY, stamp, conversions.trajectory_to_msg(plan, stamp, 0, initial_speed_mps=SPEED))
    scores = score_plans(tmp_path / "bag", ScoringTopics(odometry="/odom"))
    assert scores.unscored == 1  # t = 2 s: its 4 s future crosses the restart at 5 s
    assert [row["stamp_ns"] for row in scores.rows] == [1_500_000_000, 6_500_000_000]
    assert all(row["fde_4s"] == pytest.approx(0.0, abs=1e-6) for row in scores.rows)
