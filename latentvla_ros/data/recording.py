"""``latentvla record``: drive the expert in scenarios and log rosbag2 files,
exactly as a team logs its test vehicle (plus simulator ground truth)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentvla_ros import topics
from latentvla_ros.core.ego_state import EGO_FRAME_ID
from latentvla_ros.data.bag_io import BagWriter
from latentvla_ros.msg import PlannedTrajectory
from latentvla_ros.ros import conversions
from latentvla_ros.ros.simulation_messages import PublishOptions, camera_static_transform, episode_msg, step_messages
from latentvla_ros.simulation.closed_loop import DriveSummary, StepRecord, drive_expert
from latentvla_ros.simulation.perturbation import PerturbationConfig, PerturbationSchedule
from latentvla_ros.simulation.scenarios import SCENARIO_NAMES, ScenarioConfig
from latentvla_ros.simulation.sensors import SensorSuite
from latentvla_ros.simulation.world import DrivingWorld

# Varied drives: each episode's cruise speed and traffic density drawn within these fractions.
VARIED_CRUISE_SPEED_SPREAD = 0.3
VARIED_TRAFFIC_DENSITY_SPREAD = 0.5


@dataclass(frozen=True)
class RecordedLog:
    path: Path
    scenario: str
    simulated_s: float
    wall_s: float
    summary: DriveSummary
    perturbations: int = 0


def scenario_list(name: str) -> list[str]:
    if name == "all":
        return list(SCENARIO_NAMES)
    names = [part.strip() for part in name.split(",")]
    unknown = [n for n in names if n not in SCENARIO_NAMES]
    if unknown:
        raise ValueError(
            f"--scenario: unknown {', '.join(unknown)}; expected 'all' or some of {', '.join(SCENARIO_NAMES)}"
        )
    return names


def record_scenario(
    scenario: ScenarioConfig,
    duration_s: float,
    out_path: Path,
    sensors: SensorSuite | None = None,
    options: PublishOptions | None = None,
    perturbation: PerturbationConfig | None = None,
) -> RecordedLog:
    """Drive the expert for ``duration_s`` simulated seconds and write one bag at ``out_path``;
    with ``perturbation``, inject DART-style disturbances and mark each on /simulation/perturbation."""
    sensors = sensors or SensorSuite()
    options = options or PublishOptions(raw_image=False, compressed_image=True)
    world = DrivingWorld(scenario)
    schedule = None
    if perturbation is not None:
        # Its own seeded stream: the traffic of a seed stays what it was without perturbations.
        rng = np.random.default_rng([scenario.seed, SCENARIO_NAMES.index(scenario.name), 7])
        schedule = PerturbationSchedule(perturbation, rng)
    started = time.perf_counter()
    with BagWriter(out_path) as bag:
        bag.write(topics.TF_STATIC, 0, camera_static_transform(sensors.camera_config, 0))
        last_episode = [-1]

        def on_step(world: DrivingWorld, record: StepRecord) -> None:
            stamp_ns = world.time_ns
            if world.episode_index != last_episode[0]:
                bag.write(topics.EPISODE, stamp_ns, episode_msg(world))
                last_episode[0] = world.episode_index
            if record.perturbation_started is not None:
                bag.write(topics.PERTURBATION, stamp_ns, conversions.perturbation_to_msg(record.perturbation_started))
            for topic, message in step_messages(world, sensors, options):
                bag.write(topic, stamp_ns, message)
            plan = conversions.trajectory_to_msg(
                record.trajectory,
                stamp_ns,
                PlannedTrajectory.MODE_EXPERT,
                frame_id=EGO_FRAME_ID,
                initial_speed_mps=record.ego.speed_mps,
            )
            bag.write(topics.TRAJECTORY, stamp_ns, plan)

        summary = drive_expert(world, duration_s, on_step, schedule)
    injected = len(schedule.injected) if schedule is not None else 0
    return RecordedLog(out_path, scenario.name, duration_s, time.perf_counter() - started, summary, injected)


def record(
    scenario: str,
    minutes: float,
    seed: int,
    out_dir: Path,
    traffic_density: float = 1.0,
    sensors: SensorSuite | None = None,
    options: PublishOptions | None = None,
    varied: bool = True,
) -> list[RecordedLog]:
    """One bag per scenario in ``out_dir`` (``<scenario>_seed<seed>``); ``minutes`` of
    simulated driving in total, shared equally between the scenarios.

    ``varied`` (the default) records drives with many actions in them: perturbation
    episodes, a spread of cruise speeds and of traffic densities; False: the plain expert."""
    names = scenario_list(scenario)
    if not minutes > 0.0:
        raise ValueError(f"--minutes: expected > 0, got {minutes}")
    out_dir.mkdir(parents=True, exist_ok=True)
    duration_s = minutes * 60.0 / len(names)
    return [
        record_scenario(
            ScenarioConfig(
                name,
                seed=seed,
                traffic_density=traffic_density,
                cruise_speed_spread=VARIED_CRUISE_SPEED_SPREAD if varied else 0.0,
                traffic_density_spread=VARIED_TRAFFIC_DENSITY_SPREAD if varied else 0.0,
            ),
            duration_s,
            out_dir / f"{name}_seed{seed}",
            sensors,
            options,
            PerturbationConfig() if varied else None,
        )
        for name in names
    ]
