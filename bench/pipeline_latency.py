"""End-to-end latency of the live stack: camera stamp -> trajectory published, at 10 Hz.

Ours: the shipped student and planner as ROS 2 nodes over the real middleware (the
composed single-process ``latentvla_stack_node``, or ``--two-nodes``), fed camera frames
and odometry at 10 Hz by this script, which stamps each frame with the current time.
Two end-to-end figures: stamp -> trajectory published (the planner's own
``~/debug/pipeline_latency_ms``, taken as the trajectory goes out: the target's
definition) and stamp -> trajectory received here (one more DDS hop and this process's
executor). Reference, in the same run: the pure model compute for the same frames — the
student's forward pass plus the planner's, in-process, no middleware — at the camera's
pace (one frame every 100 ms, idle between, as the nodes run) and back to back (caches
and torch's threads kept warm: faster than any 10 Hz pipeline can see). The ratio line is
p99 stamp -> published over p99 compute at 10 Hz (the target is at most 1.3), with the
back-to-back ratio beside it.

    .venv/bin/python bench/pipeline_latency.py [--seconds 30] [--two-nodes] [--reference-threads N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
NODES = Path(sys.prefix) / "lib" / "latentvla_ros"


def model_compute_ms(frames: list[np.ndarray], runs: int, period_s: float = 0.0) -> np.ndarray:
    """Student + planner forward per frame, in-process (what the nodes' callbacks compute);
    with ``period_s`` one frame per period, idle in between (the camera's pace)."""
    from latentvla_ros.core.driving_command import DrivingCommand
    from latentvla_ros.core.ego_state import EgoState
    from latentvla_ros.planning.latentvla_planner import load_planner

    planner = load_planner("latentvla", REPO_ROOT / "models")
    ego = EgoState(0, 0.0, 0.0, 0.0, 8.0)
    times = []
    next_time = time.monotonic()
    for index in range(runs):
        next_time += period_s
        time.sleep(max(0.0, next_time - time.monotonic()))
        history = np.stack([frames[index % len(frames)], frames[(index + 1) % len(frames)]])
        started = time.perf_counter()
        actions = planner.source(history, ego, DrivingCommand.STRAIGHT, 0)
        planner.plan(history[-1], ego, DrivingCommand.STRAIGHT, actions)
        times.append((time.perf_counter() - started) * 1e3)
    return np.asarray(times[2:])  # without the first calls' warm-up


def end_to_end_ms(frames: list[np.ndarray], seconds: float, two_nodes: bool) -> dict:
    """Milliseconds: stamp -> published, stamp -> received here, the nodes' own processing
    times (student, planner); and the number of frames sent."""
    import rclpy
    from latentvla_ros.msg import PlannedTrajectory
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float64

    from latentvla_ros.core.ego_state import EgoState
    from latentvla_ros.ros import conversions

    common = ["-r", "~/input/image:=/bench/cam", "-r", "~/input/odometry:=/bench/odom"]
    if two_nodes:
        commands = [
            [str(NODES / "student_node"), "--ros-args", *common],
            [
                str(NODES / "planner_node"),
                "--ros-args",
                *common,
                "-r",
                "~/input/latent_actions:=/student/output/latent_actions",
            ],
        ]
    else:
        commands = [[str(NODES / "latentvla_stack_node"), "--ros-args", *common]]
    processes = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for command in commands
    ]
    rclpy.init()
    node = rclpy.create_node("latency_bench")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    arrivals: dict[int, int] = {}

    def on_trajectory(message: PlannedTrajectory) -> None:
        if message.mode != PlannedTrajectory.MODE_SAFE_STOP:
            arrivals[conversions.time_to_ns(message.header.stamp)] = time.time_ns()

    published: list[float] = []
    node.create_subscription(PlannedTrajectory, "/planner/output/trajectory", on_trajectory, 10)
    node.create_subscription(Float64, "/planner/debug/pipeline_latency_ms", lambda m: published.append(m.data), 10)
    processing: dict[str, list[float]] = {"student": [], "planner": []}
    for name, values in processing.items():
        node.create_subscription(Float64, f"/{name}/debug/processing_time_ms", lambda m, v=values: v.append(m.data), 10)
    camera = node.create_publisher(Image, "/bench/cam", 10)
    odometry = node.create_publisher(Odometry, "/bench/odom", 10)
    sent: list[int] = []
    try:
        warm_up_end = time.monotonic() + 60.0
        while not arrivals and time.monotonic() < warm_up_end:  # nodes up and models loaded
            _publish(camera, odometry, frames[0], conversions, EgoState)
            _spin_for(executor, 0.1)
        _spin_for(executor, 0.5)  # the warm-up's last answers
        arrivals.clear()
        published.clear()
        for values in processing.values():
            values.clear()
        period = 0.1
        next_time = time.monotonic()
        for index in range(round(seconds / period)):
            sent.append(_publish(camera, odometry, frames[index % len(frames)], conversions, EgoState))
            next_time += period
            _spin_for(executor, max(0.0, next_time - time.monotonic()))
        _spin_for(executor, 1.0)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown()
    received = np.array([(arrivals[s] - s) * 1e-6 for s in sent if s in arrivals])
    return {
        "published": np.asarray(published),
        "received": received,
        "student": np.asarray(processing["student"]),
        "planner": np.asarray(processing["planner"]),
        "sent": len(sent),
    }


def _publish(camera, odometry, frame, conversions, ego_state_type) -> int:
    stamp = time.time_ns()
    odometry.publish(conversions.ego_state_to_odometry(ego_state_type(stamp, 0.0, 0.0, 0.0, 8.0)))
    camera.publish(conversions.image_to_msg(frame, stamp, "camera"))
    return stamp


def _spin_for(executor, seconds: float) -> None:
    end = time.monotonic() + seconds
    while True:
        remaining = end - time.monotonic()
        if remaining <= 0:
            return
        executor.spin_once(timeout_sec=min(remaining, 0.01))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--two-nodes", action="store_true", help="student and planner as two processes")
    parser.add_argument(
        "--reference-threads", type=int, default=0, help="torch threads for the reference compute (0: torch's default)"
    )
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (128, 256, 3), dtype=np.uint8) for _ in range(8)]
    if args.reference_threads:
        import torch

        torch.set_num_threads(args.reference_threads)
    compute_hot = model_compute_ms(frames, runs=round(args.seconds * 10))
    compute = model_compute_ms(frames, runs=round(args.seconds * 10), period_s=0.1)
    measured = end_to_end_ms(frames, args.seconds, args.two_nodes)
    published, received, sent = measured["published"], measured["received"], measured["sent"]
    form = "two nodes" if args.two_nodes else "composed (one process)"
    print(f"stack: {form}; camera 10 Hz for {args.seconds:.0f} s: {sent} frames sent, {len(received)} planned")
    print(f"{'measure':40s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s}")
    for name, values in (
        ("model compute, back to back", compute_hot),
        ("model compute at 10 Hz (reference)", compute),
        ("in the nodes: student processing", measured["student"]),
        ("in the nodes: planner processing", measured["planner"]),
        ("stamp -> trajectory published", published),
        ("stamp -> trajectory received (+1 hop)", received),
    ):
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        print(f"{name:40s} {p50:8.1f} {p90:8.1f} {p99:8.1f}")
    ratio = np.percentile(published, 99) / np.percentile(compute, 99)
    received_ratio = np.percentile(received, 99) / np.percentile(compute, 99)
    hot_ratio = np.percentile(published, 99) / np.percentile(compute_hot, 99)
    print(
        f"ratio: stamp -> published p99 / model compute at 10 Hz p99 = {ratio:.2f} (target <= 1.3; "
        f"received: {received_ratio:.2f}; vs back to back: {hot_ratio:.2f}); planned {len(received)}/{sent}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
