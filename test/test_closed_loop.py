"""The closed-loop benchmark: its suites, how runs add up, perturbation starts, and the
smoke suite end to end through the live graph (expert and constant velocity)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latentvla_ros.evaluation.closed_loop_suite import SCENARIOS, SUITES, aggregate_runs, suite_minutes
from latentvla_ros.simulation.route import build_lane_path
from latentvla_ros.simulation.scenarios import ScenarioConfig
from latentvla_ros.simulation.world import DrivingWorld

LATENTVLA = Path(sys.executable).parent / "latentvla"


def test_default_suite_is_half_an_hour_over_every_scenario_with_perturbed_starts():
    runs = SUITES["default"]
    assert suite_minutes("default") >= 30.0
    assert {run.scenario for run in runs} == set(SCENARIOS)
    perturbed = {run.scenario for run in runs if run.lateral_offset_m > 0.0}
    assert perturbed == set(SCENARIOS)
    assert len({run.name for run in runs}) == len(runs)  # each run its own folder
    assert suite_minutes("smoke") <= 1.0


def test_runs_add_up_per_km_per_step_and_per_plan():
    def run(plans, pdms, c, collisions, at_fault, off_road, km, seconds, completion):
        return {
            "scores": {"plans": plans, "pdms": pdms, "nc": 1.0, "dac": None, "ttc": 1.0, "ep": 0.5, "c": c},
            "drive": {
                "collisions": collisions,
                "at_fault_collisions": at_fault,
                "off_road_steps": off_road,
                "simulated_s": seconds,
                "route_completion": completion,
            },
            "distance_km": km,
            "steps": round(seconds * 10),
        }

    first = run(100, 0.9, 1.0, 1, 0, 10, 1.5, 20.0, [1.0])
    second = run(300, 0.5, 0.9, 2, 2, 30, 0.5, 20.0, [0.4, 0.6])
    row = aggregate_runs([first, second])  # values rounded to 4 digits in the report
    assert row["pdms"] == pytest.approx((100 * 0.9 + 300 * 0.5) / 400, abs=1e-4)  # weighted by plans
    assert row["comfort_violation_rate"] == pytest.approx(1 - (100 * 1.0 + 300 * 0.9) / 400, abs=1e-4)
    assert row["collisions_per_km"] == pytest.approx(3 / 2.0, abs=1e-4) and row["at_fault_collisions_per_km"] == 1.0
    assert row["off_road_rate"] == pytest.approx(40 / 400, abs=1e-4)
    assert row["route_completion"] == pytest.approx(np.mean([1.0, 0.4, 0.6]), abs=1e-4)  # per episode
    assert row["dac"] is None  # no run measured it: n/a, not 0
    assert row["plans"] == 400 and row["runs"] == 2


def test_perturbed_start_puts_the_ego_beside_its_lane_alternating_sides():
    def lateral(offset: float, episode_skip: int = 0) -> float:
        world = DrivingWorld(ScenarioConfig("highway", seed=4, start_lateral_offset_m=offset))
        for _ in range(episode_skip):
            world._start_episode()
        path = build_lane_path(world.episode.road.network, world.episode.route)
        position = world.ego_state().pose[:2]
        arc, _ = path.project(position[None])
        centre = path.pose_at(arc[0])
        normal = np.array([-np.sin(centre[2]), np.cos(centre[2])])  # left, in the ROS map frame
        return float((position - centre[:2]) @ normal)

    assert lateral(0.0) == pytest.approx(0.0, abs=0.3)
    assert lateral(1.0) == pytest.approx(lateral(0.0) + 1.0, abs=0.3)
    assert lateral(1.0, episode_skip=1) == pytest.approx(lateral(0.0, episode_skip=1) - 1.0, abs=0.3)


@pytest.mark.slow
def test_smoke_suite_through_the_live_graph(tmp_path):
    pytest.importorskip("rclpy")
    out = tmp_path / "closed_loop"
    result = subprocess.run(
        [LATENTVLA, "closed-loop", "--suite", "smoke", "--planners", "expert,constant_velocity", "--out", out],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    expert, baseline = report["rows"]["expert"], report["rows"]["constant_velocity"]
    assert expert["at_fault_collisions"] == 0 and expert["plans"] >= 150  # 20 s at 10 Hz, lock-stepped
    assert expert["simulated_s"] >= 19.0 and expert["distance_km"] > 0.1
    assert expert["pdms"] > 0.8 and baseline["plans"] >= 150
    assert "| expert |" in (out / "report.md").read_text()
    for picture in ("scores.png", "paths_highway.png"):
        assert (out / picture).stat().st_size > 10_000
