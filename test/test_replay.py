"""`latentvla replay` end to end on the real middleware: an odometry-only bag from another
robot (its own topic and frames) through the constant-velocity node, a simulated bag
through the LatentVLA student + planner, and one-line refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from latentvla_ros.core.ego_state import EgoState
from latentvla_ros.data.bag_io import BagWriter, bag_topics
from latentvla_ros.ros import conversions

LATENTVLA = Path(sys.executable).parent / "latentvla"
ACCELERATION = 1.0  # m/s^2: constant velocity misses by a t^2 / 2 at each horizon


def _latentvla(*arguments: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(LATENTVLA), *arguments], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def odometry_only_bag(tmp_path_factory) -> Path:
    """A robot's 12 s straight run with steady acceleration: /odom in odom -> base_footprint, no camera."""
    path = tmp_path_factory.mktemp("robot") / "odometry_only"
    with BagWriter(path) as bag:
        for k in range(121):
            t = 0.1 * k
            stamp = 5_000_000_000 + k * 100_000_000
            ego = EgoState(
                stamp,
                5.0 * t + 0.5 * ACCELERATION * t * t,
                0.0,
                0.0,
                5.0 + ACCELERATION * t,
                frame_id="odom",
                child_frame_id="base_footprint",
            )
            bag.write("/odom", stamp, conversions.ego_state_to_odometry(ego))
    return path


def test_odometry_only_bag_gets_constant_velocity_ade_fde(odometry_only_bag, tmp_path):
    out = tmp_path / "replay"
    result = _latentvla(
        "replay", str(odometry_only_bag), "--planner", "constant_velocity", "--odometry-topic", "/odom",
        "--odometry-frame", "odom", "--base-frame", "base_footprint", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    row = report["rows"]["constant_velocity"]
    # Every message with a full 4 s future answered and scored: 12 s at 10 Hz, the last 4 s unscored.
    assert report["frames_missed"] == 0 and row["plans"] == 81 and row["unscored"] == 40
    # Constant velocity under constant acceleration misses by a t^2 / 2 at t = 0.5 k: by hand.
    times = 0.5 * np.arange(1, 9)
    assert row["fde_4s"] == pytest.approx(0.5 * ACCELERATION * 16.0, abs=0.05)
    assert row["ade_4s"] == pytest.approx(np.mean(0.5 * ACCELERATION * times**2), abs=0.05)
    assert row["pdms"] is None  # no agents in the bag: not scored, not 0
    assert "/planning/trajectory" in bag_topics(out / "bag")  # the recorded output bag
    assert (out / "replay_drive.png").stat().st_size > 10_000 and (out / "report.md").is_file()
    assert "real time" in result.stdout


def test_camera_planner_on_an_odometry_only_bag_is_one_line(odometry_only_bag, tmp_path):
    result = _latentvla("replay", str(odometry_only_bag), "--odometry-topic", "/odom", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "no camera topic" in result.stderr and "--planner constant_velocity" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_wrong_typed_odometry_topic_is_one_line(tmp_path):
    bag = tmp_path / "imu"
    with BagWriter(bag) as writer:
        writer.write("/odom", 1, conversions.image_to_msg(np.zeros((4, 4, 3), np.uint8), 1, "camera"))
    result = _latentvla("replay", str(bag), "--planner", "constant_velocity", "--odometry-topic", "/odom")
    assert result.returncode == 2
    assert "/odom is sensor_msgs/msg/Image, expected nav_msgs/msg/Odometry" in result.stderr
    assert "Traceback" not in result.stderr


def test_simulated_bag_replays_through_the_student_and_planner(tmp_path):
    from latentvla_ros.data.recording import record_scenario
    from latentvla_ros.simulation.scenarios import ScenarioConfig

    bag = tmp_path / "highway"
    record_scenario(ScenarioConfig("highway", seed=3), 8.0, bag)
    out = tmp_path / "replay"
    result = _latentvla("replay", str(bag), "--planner", "latentvla", "--out", str(out), timeout=600.0)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    row = report["rows"]["latentvla"]
    # Planned every 0.5 s on frames with a full 4 s future: the 8 s log gives 8 or 9 of them.
    assert report["frames_missed"] == 0, result.stdout + result.stderr[-3000:]
    assert row["plans_by_mode"].get("distilled", 0) >= 8
    assert all(row[k] is not None for k in ("pdms", "nc", "ttc", "ep", "c", "dac"))  # agents + road logged
    assert report["recorded"]["/latentvla/student/latent_actions"] >= 8


def test_plan_cadence_plans_every_interval_and_sends_only_the_history_before_it():
    from latentvla_ros.ros.bag_replay import PlanCadence

    cadence = PlanCadence(plan_every_s=0.5, history_s=0.3)
    frames_ms = range(0, 1100, 100)  # a 10 Hz camera
    kinds = {t: cadence.classify(t * 1_000_000) for t in frames_ms}
    # Planned at 0, 500, 1000 ms; the frames up to 0.35 s before each planned one go out as its history.
    assert [t for t, k in kinds.items() if k == PlanCadence.PLAN] == [0, 500, 1000]
    assert [t for t, k in kinds.items() if k == PlanCadence.HISTORY] == [200, 300, 400, 700, 800, 900]
    assert [t for t, k in kinds.items() if k == PlanCadence.SKIP] == [100, 600]
    every = PlanCadence(plan_every_s=None, history_s=0.3)
    assert {every.classify(t) for t in range(0, 10**9, 10**8)} == {PlanCadence.PLAN}
