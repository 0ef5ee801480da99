"""Simulator + camera throughput per scenario, against stock highway-env in the same run.

Ours: what `latentvla record` does per step (world with traffic, privileged expert,
tracker, front camera, JPEG, every message serialized into an MCAP bag).
Reference: the stock highway-env gymnasium environment of the same scenario stepped at
the same 10 Hz (its default Kinematics observation, no camera, no planner, no logging).

    .venv/bin/python bench/sim_throughput.py [--seconds 60] [--seed 0]

Prints a table and a final ratio line; the issue's target is >= 5x real time for the
default suite (all four scenarios) including the camera.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import gymnasium
import highway_env  # noqa: F401 - registers the environments
import numpy as np

from latentvla_ros.data.recording import record_scenario
from latentvla_ros.environment import ensure_ament_prefix
from latentvla_ros.simulation.scenarios import SCENARIO_NAMES, ScenarioConfig
from latentvla_ros.simulation.sensors import SensorSuite
from latentvla_ros.simulation.world import DrivingWorld

STOCK_ENV = {
    "highway": "highway-fast-v0",
    "merge": "merge-v0",
    "roundabout": "roundabout-v0",
    "intersection": "intersection-v0",
}


def stock_highway_env_fps(name: str, steps: int, seed: int) -> float:
    """Steps per second of the stock environment at 10 Hz with idle actions (episodes restarted)."""
    env = gymnasium.make(STOCK_ENV[name], config={"simulation_frequency": 10, "policy_frequency": 10})
    env.reset(seed=seed)
    idle = 1  # IDLE in every discrete meta-action set
    started = time.perf_counter()
    for _ in range(steps):
        _obs, _reward, terminated, truncated, _info = env.step(idle)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - started)


def component_times_ms(name: str, seed: int, steps: int = 100) -> dict[str, float]:
    """Median cost of the world step and one camera frame (after a warm-up)."""
    world = DrivingWorld(ScenarioConfig(name, seed=seed))
    sensors = SensorSuite()
    sensors.camera_frame(world)  # builds the road raster once per scenario
    step_s, camera_s = [], []
    for _ in range(steps):
        started = time.perf_counter()
        sensors.camera_frame(world)
        camera_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        world.step(0.3, 0.0)
        step_s.append(time.perf_counter() - started)
    return {"world_ms": 1e3 * float(np.median(step_s)), "camera_ms": 1e3 * float(np.median(camera_s))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="simulated seconds per scenario")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ensure_ament_prefix()
    gymnasium.logger.min_level = gymnasium.logger.ERROR  # the stock envs' deprecation notices
    rows = []
    total_simulated, total_wall, total_stock_wall = 0.0, 0.0, 0.0
    with tempfile.TemporaryDirectory() as out:
        for name in SCENARIO_NAMES:
            log = record_scenario(ScenarioConfig(name, seed=args.seed), args.seconds, Path(out) / name)
            steps = round(args.seconds * 10)
            stock_fps = stock_highway_env_fps(name, steps, args.seed)
            parts = component_times_ms(name, args.seed)
            rows.append((name, log, steps / log.wall_s, stock_fps, parts))
            total_simulated += args.seconds
            total_wall += log.wall_s
            total_stock_wall += steps / stock_fps
    columns = ("sim s", "wall s", "ours fps", "x real time", "stock fps", "world ms", "camera ms", "at-fault")
    widths = (6, 7, 9, 11, 10, 9, 10, 8)
    header = f"{'scenario':13s} " + " ".join(f"{c:>{w}s}" for c, w in zip(columns, widths, strict=True))
    print(header)
    print("-" * len(header))
    for name, log, fps, stock_fps, parts in rows:
        print(
            f"{name:13s} {log.simulated_s:6.0f} {log.wall_s:7.1f} {fps:9.1f} {fps / 10:11.1f} {stock_fps:10.1f}"
            f" {parts['world_ms']:9.2f} {parts['camera_ms']:10.2f} {log.summary.at_fault_collisions:8d}"
        )
    ours_rtf = total_simulated / total_wall
    stock_rtf = total_simulated / total_stock_wall
    print(
        f"suite: ours {ours_rtf:.1f}x real time (expert + camera + bag) vs stock highway-env env.step"
        f" {stock_rtf:.1f}x (no camera, no planner): ratio {ours_rtf / stock_rtf:.2f}"
    )


if __name__ == "__main__":
    main()
