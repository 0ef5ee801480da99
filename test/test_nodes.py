"""The nodes over the real middleware: the demo graph, bad parameters, bad inputs,
the launch-file runner and the synchronizer stand-in."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from latentvla_ros.msg import GroundTruthAgents, PlannedTrajectory
from nav_msgs.msg import Odometry
from rclpy.executors import SingleThreadedExecutor

from latentvla_ros import topics
from latentvla_ros.core.trajectory import Trajectory
from latentvla_ros.data.bag_io import bag_topics
from latentvla_ros.ros import conversions
from latentvla_ros.ros.launch_yaml import LaunchError, parse_overrides, plan_launch
from latentvla_ros.ros.message_sync import ApproximateTimeSynchronizer, Subscriber

BIN = Path(sys.executable).parent
NODES = Path(sys.prefix) / "lib" / "latentvla_ros"
REPO_ROOT = Path(__file__).resolve().parents[1]


def _demo(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(BIN / "latentvla"),
            "demo",
            "--scenario",
            "intersection",
            "--duration",
            "8",
            "--out",
            str(tmp_path),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_demo_drives_on_the_learned_stack_records_and_draws(tmp_path):
    """Issue 10 acceptance 4: simulator + student + planner (shipped models) in closed loop."""
    result = _demo(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "student + planner" in result.stdout and "route completion" in result.stdout
    recorded = bag_topics(tmp_path / "bag")
    for topic in (
        topics.ODOMETRY,
        topics.CAMERA_IMAGE_COMPRESSED,
        topics.TRAJECTORY,
        "/latentvla/student/latent_actions",
    ):
        _kind, count = recorded[topic]
        assert count >= 60, (topic, count)
    report = json.loads((tmp_path / "demo_report.json").read_text())
    assert report["plans_by_mode"].get("distilled", 0) >= 60  # the learned planner drove, not safe stops
    assert report["pipeline_latency_ms_p50"] is not None  # 0 on the lock-stepped sim clock
    assert report["student_processing_ms_p50"] > 0.0 and report["planner_processing_ms_p50"] > 0.0
    assert (tmp_path / "demo_drive.png").stat().st_size > 10_000
    assert (tmp_path / "demo_preview.png").stat().st_size > 10_000


@pytest.mark.slow
def test_demo_with_the_expert_drives_records_and_draws(tmp_path):
    result = _demo(tmp_path, "--planner", "expert")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    recorded = bag_topics(tmp_path / "bag")
    for topic in (topics.ODOMETRY, topics.CAMERA_IMAGE_COMPRESSED, topics.TRAJECTORY, topics.GROUND_TRUTH_AGENTS):
        _kind, count = recorded[topic]
        assert count >= 80, (topic, count)  # every step of 8 simulated seconds at 10 Hz (plus start-up repeats)
    assert recorded[topics.TRAJECTORY][0] == "latentvla_ros/msg/PlannedTrajectory"
    assert recorded[topics.TF_STATIC][1] == 1 and recorded[topics.EPISODE][1] >= 1
    report = json.loads((tmp_path / "demo_report.json").read_text())
    assert report["plans_by_mode"].get("expert", 0) >= 80 and report["at_fault_collisions"] == 0
    assert (tmp_path / "demo_drive.png").stat().st_size > 10_000


def test_recorder_stopped_right_after_a_burst_still_writes_all_of_it(rclpy_context, tmp_path):
    """A launch stops the recorder the moment the simulator exits: what is still queued
    for it then must reach the bag (the demo lost its last 0.4 s before the drain)."""
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile
    from std_msgs.msg import String

    recorder = subprocess.Popen(
        [
            str(NODES / "bag_recorder_node"),
            "--ros-args",
            "-p", "topics:=[/test/burst]",
            "-p", f"output_path:={tmp_path / 'bag'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    node = rclpy.create_node("burst", context=rclpy_context)
    publisher = node.create_publisher(String, "/test/burst", QoSProfile(depth=1000))
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and publisher.get_subscription_count() == 0:
            time.sleep(0.05)
        assert publisher.get_subscription_count() == 1, "the recorder never subscribed"
        time.sleep(0.5)  # matched both ways before the burst
        for index in range(100):  # the recorder's queue depth
            publisher.publish(String(data=f"{index:04d}" + "x" * 20_000))  # about a compressed camera frame
        assert publisher.wait_for_all_acked(Duration(seconds=10.0))  # as the simulator does before it exits
        recorder.send_signal(signal.SIGINT)
        output, _ = recorder.communicate(timeout=30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
        node.destroy_node()
    assert recorder.returncode == 0, output
    assert bag_topics(tmp_path / "bag")["/test/burst"] == ("std_msgs/msg/String", 100), output


def test_invalid_parameter_is_one_line_and_exit_2():
    result = subprocess.run(
        [str(NODES / "simulator_node"), "--ros-args", "-p", "scenario:=moon"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "invalid parameter: scenario must be one of highway, merge, roundabout, intersection, got 'moon'" in output
    assert "Traceback" not in output


def test_simulator_rejects_malformed_trajectory_and_keeps_serving(rclpy_context):
    simulator = subprocess.Popen(
        [
            str(NODES / "simulator_node"),
            "--ros-args",
            "-p", "scenario:=merge",
            "-p", "lockstep:=false",
            "-p", "publish_raw_image:=false",
            "-r", "~/input/trajectory:=/planning/trajectory",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    node = rclpy.create_node("bad_planner", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    odometry, diagnostics = [], []
    node.create_subscription(Odometry, topics.ODOMETRY, odometry.append, 10)
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    publisher = node.create_publisher(PlannedTrajectory, "/planning/trajectory", 10)
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and not odometry:
            executor.spin_once(timeout_sec=0.1)
        assert odometry, "the simulator published no odometry"
        bad = conversions.trajectory_to_msg(Trajectory.constant_velocity(5.0), 0, PlannedTrajectory.MODE_DISTILLED)
        bad.header.frame_id = "map"  # plans must be in the ego frame
        rejected = 0
        while time.monotonic() < deadline and rejected < 1:
            bad.header.stamp = odometry[-1].header.stamp
            publisher.publish(bad)
            executor.spin_once(timeout_sec=0.1)
            for array in diagnostics:
                values = {kv.key: kv.value for status in array.status for kv in status.values}
                rejected = max(rejected, int(values.get("rejected_trajectories", 0)))
        assert rejected >= 1
        served_before = len(odometry)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
        assert len(odometry) > served_before + 3  # still stepping and publishing
        assert simulator.poll() is None
    finally:
        simulator.terminate()
        output, _ = simulator.communicate(timeout=30)
        executor.shutdown()
        node.destroy_node()
    assert "ignoring trajectory: PlannedTrajectory.header.frame_id: expected frame 'base_link', got 'map'" in output


def test_synchronizer_pairs_messages_by_stamp(rclpy_context):
    node = rclpy.create_node("sync_test", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    pairs = []
    odometry_sub = Subscriber(node, Odometry, "/sync_test/odometry", qos_profile=10)
    agents_sub = Subscriber(node, GroundTruthAgents, "/sync_test/agents", qos_profile=10)
    sync = ApproximateTimeSynchronizer([odometry_sub, agents_sub], 10, 0.01)
    sync.registerCallback(lambda odom, agents: pairs.append((odom.header.stamp.sec, agents.header.stamp.sec)))
    odometry_pub = node.create_publisher(Odometry, "/sync_test/odometry", 10)
    agents_pub = node.create_publisher(GroundTruthAgents, "/sync_test/agents", 10)
    try:
        for second in range(1, 6):
            odometry = Odometry()
            odometry.header.stamp.sec = second
            odometry_pub.publish(odometry)
            if second != 3:  # one stream misses a stamp: that odometry stays unpaired
                agents = GroundTruthAgents()
                agents.header.stamp.sec = second
                agents_pub.publish(agents)
            for _ in range(5):
                executor.spin_once(timeout_sec=0.05)
        deadline = time.monotonic() + 5.0
        while len(pairs) < 4 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
    assert pairs == [(1, 1), (2, 2), (4, 4), (5, 5)]


def test_launch_plan_substitutes_and_builds_ros_args():
    plan = plan_launch(REPO_ROOT / "launch" / "demo.launch.yaml", {"scenario": "merge", "bag_path": "/tmp/b"})
    assert plan.arguments == {
        "scenario": "merge",
        "seed": "0",
        "duration_s": "60.0",
        "start_lateral_offset_m": "0.0",
        "start_heading_offset_rad": "0.0",
        "bag_path": "/tmp/b",
    }
    simulator, expert, recorder = plan.nodes
    assert simulator.shutdown_on_exit and not expert.shutdown_on_exit
    assert simulator.command[0].endswith("lib/latentvla_ros/simulator_node")
    args = simulator.command
    assert args[args.index("-p", args.index("--params-file")) + 1] == "scenario:=merge"
    assert Path(args[args.index("--params-file") + 1]).is_file()
    assert "~/input/trajectory:=/planning/trajectory" in args
    assert "use_sim_time:=true" in expert.command
    topics_arg = next(a for a in recorder.command if a.startswith("topics:="))
    assert topics_arg.startswith("topics:=[/sensing/camera/front/image_raw/compressed,")


def test_launch_errors_are_clear(tmp_path):
    with pytest.raises(LaunchError, match="unknown launch argument"):
        plan_launch(REPO_ROOT / "launch" / "demo.launch.yaml", {"speed": "1"})
    with pytest.raises(LaunchError, match="name:=value"):
        parse_overrides(["scenario=merge"])
    unsupported = tmp_path / "group.launch.yaml"
    unsupported.write_text("launch:\n  - group: {}\n")
    with pytest.raises(LaunchError, match="'group' entities are not supported"):
        plan_launch(unsupported, {})
    missing = tmp_path / "missing.launch.yaml"
    missing.write_text("launch:\n  - node: {pkg: latentvla_ros, exec: no_such_node}\n")
    with pytest.raises(LaunchError, match="executable 'no_such_node' not found"):
        plan_launch(missing, {})


def test_environment_is_isolated():
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert 1 <= int(os.environ["ROS_DOMAIN_ID"]) <= 100


def test_sim_launch_includes_the_stack_launch_file():
    """One description: sim.launch.yaml includes latentvla.launch.yaml (no copy of its nodes)."""
    plan = plan_launch(REPO_ROOT / "launch" / "sim.launch.yaml", {"scenario": "merge", "use_teacher": "true"})
    names = [node.name for node in plan.nodes]
    assert names == ["simulator", "student", "planner", "bag_recorder"]
    planner = plan.nodes[2].command
    assert "use_sim_time:=true" in planner and "use_teacher:=true" in planner
    assert "~/output/trajectory:=/planning/trajectory" in planner
    alone = plan_launch(REPO_ROOT / "launch" / "latentvla.launch.yaml", {"use_sim_time": "true", "use_teacher": "true"})
    assert [node.command[1:] for node in alone.nodes] == [node.command[1:] for node in plan.nodes[1:3]]


@pytest.mark.parametrize("name", ["latentvla", "sim", "teacher", "demo", "baseline", "sim_baseline", "sim_teacher"])
def test_python_launch_files_include_their_yaml_description(name):
    """The .py form is the YAML graph included (so both forms and `latentvla launch` agree);
    where launch_ros is installed it must also build a LaunchDescription."""
    import ast

    source = (REPO_ROOT / "launch" / f"{name}.launch.py").read_text()
    tree = ast.parse(source)
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert f"{name}.launch.yaml" in strings and (REPO_ROOT / "launch" / f"{name}.launch.yaml").is_file()
    assert any(isinstance(node, ast.FunctionDef) and node.name == "generate_launch_description" for node in tree.body)
    plan_launch(REPO_ROOT / "launch" / f"{name}.launch.yaml", {})
    pytest.importorskip("launch_ros")  # a ROS 2 install; not on the pip path
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_launch", REPO_ROOT / "launch" / f"{name}.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate_launch_description().entities
