"""How fast `latentvla replay` evaluates a bag, lock-stepped, against real-time playback.

Ours: `latentvla replay BAG --planner P` lock-stepped (as fast as the graph answers; every
frame the planner plans on is answered). Reference, in the same run: the same bag played
at real time (`--rate 1`) through the same graph. Both report the log seconds played and
the wall seconds spent playing (start-up and scoring excluded; they are printed apart).
The ratio line is real-time wall / lock-stepped wall for the constant-velocity replay
(the target is at least 20x); the LatentVLA stack's factor is in the table beside it.

    .venv/bin/python bench/replay_speed.py [--bag BAG] [--seconds 60]

Without --bag it records a highway drive of --seconds with the expert first (no ROS).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LATENTVLA = Path(sys.executable).parent / "latentvla"


def replay(bag: Path, planner: str, out: Path, rate: float | None) -> dict:
    command = [str(LATENTVLA), "replay", str(bag), "--planner", planner, "--out", str(out)]
    if rate is not None:
        command += ["--rate", str(rate)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    total = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"replay failed: {' '.join(command)}\n{result.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return {**report, "total_s": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bag", help="a camera + odometry rosbag2 (default: record one)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the recorded bag")
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        bag = Path(args.bag) if args.bag else None
        if bag is None:
            from latentvla_ros.data.recording import record_scenario
            from latentvla_ros.simulation.scenarios import ScenarioConfig

            bag = scratch / "highway_bench"
            record_scenario(ScenarioConfig("highway", seed=11), args.seconds, bag)
        rows = [
            ("constant velocity, lock-stepped", replay(bag, "constant_velocity", scratch / "cv", None)),
            ("constant velocity, real time (reference)", replay(bag, "constant_velocity", scratch / "cv_rt", 1.0)),
            ("LatentVLA student + planner, lock-stepped", replay(bag, "latentvla", scratch / "lv", None)),
        ]
    print(f"bag: {bag.name}, {rows[0][1]['log_s']:.1f} s of log")
    header = f"{'replay':44s} {'plans':>6s} {'missed':>6s} {'play s':>8s} {'x real time':>12s}"
    print(f"{header} {'with start-up+scoring s':>24s}")
    for name, report in rows:
        row = next(iter(report["rows"].values()))
        print(
            f"{name:44s} {row['plans']:6d} {report['frames_missed']:6d} {report['wall_s']:8.2f} "
            f"{report['real_time_factor']:12.1f} {report['total_s']:24.1f}"
        )
    ours, reference = rows[0][1]["wall_s"], rows[1][1]["wall_s"]
    print(
        f"ratio: real-time playback / lock-stepped replay (constant velocity) = {reference / ours:.1f}x "
        f"(target >= 20x); LatentVLA lock-stepped {rows[2][1]['real_time_factor']:.1f}x real time"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
