"""LatentActions and PlannedTrajectory cross a process boundary over the real
rclpy middleware (Fast DDS on loopback) with every field intact."""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from latentvla_ros.msg import LatentActions as LatentActionsMsg
from latentvla_ros.msg import PlannedTrajectory
from rclpy.executors import SingleThreadedExecutor

from latentvla_ros.core.latent_actions import LatentActions, LatentSource
from latentvla_ros.core.trajectory import Trajectory
from latentvla_ros.ros import conversions

LISTENER = Path(__file__).parent / "helpers" / "message_listener.py"
DEADLINE_S = 60.0


def _messages():
    rng = np.random.default_rng(3)
    probabilities = rng.dirichlet(np.ones(16), size=12)
    latents = LatentActions(
        stamp_ns=1_700_000_000_250_000_000,
        source=LatentSource.STUDENT,
        tokens=probabilities.argmax(axis=1),
        probabilities=probabilities,
        step_period_s=0.5,
        model_version="1.3",
        embedding=rng.normal(size=(12, 4)),
        frame_id="front_camera",
    )
    trajectory = Trajectory.constant_velocity(9.0, yaw_rate_rps=-0.15)
    planned = conversions.trajectory_to_msg(
        trajectory,
        stamp_ns=latents.stamp_ns,
        mode=PlannedTrajectory.MODE_UNDISTILLED,
        latent_tokens=latents.tokens,
        model_version="0.4",
        initial_speed_mps=9.0,
    )
    return conversions.latent_actions_to_msg(latents), planned


def _read_lines(process, lines):
    for line in process.stdout:
        lines.append(json.loads(line))


def test_messages_arrive_intact_in_another_process(rclpy_context):
    latents_msg, planned_msg = _messages()
    listener = subprocess.Popen(
        [
            sys.executable,
            str(LISTENER),
            "/test/latent_actions=latentvla_ros/msg/LatentActions",
            "/test/trajectory=latentvla_ros/msg/PlannedTrajectory",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    received = []
    reader = threading.Thread(target=_read_lines, args=(listener, received), daemon=True)
    reader.start()
    node = rclpy.create_node("middleware_test_publisher", context=rclpy_context)
    latents_pub = node.create_publisher(LatentActionsMsg, "/test/latent_actions", 10)
    trajectory_pub = node.create_publisher(PlannedTrajectory, "/test/trajectory", 10)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + DEADLINE_S
        # Publish until the listener has both (discovery takes a moment).
        while listener.poll() is None and time.monotonic() < deadline:
            latents_pub.publish(latents_msg)
            trajectory_pub.publish(planned_msg)
            executor.spin_once(timeout_sec=0.1)
        assert listener.wait(timeout=5) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
        executor.shutdown()
        node.destroy_node()
    reader.join(timeout=5)
    by_topic = {line["topic"]: line for line in received if "topic" in line}
    assert set(by_topic) == {"/test/latent_actions", "/test/trajectory"}, received

    latents = by_topic["/test/latent_actions"]
    assert latents["type"] == "LatentActions"
    data = latents["data"]
    assert data["header"] == {"stamp": {"sec": 1_700_000_000, "nanosec": 250_000_000}, "frame_id": "front_camera"}
    assert data["source"] == LatentActionsMsg.SOURCE_STUDENT
    assert data["codebook_size"] == 16 and data["embedding_dim"] == 4
    assert data["tokens"] == list(latents_msg.tokens)
    assert data["probabilities"] == pytest.approx(list(latents_msg.probabilities))
    assert data["embedding"] == pytest.approx(list(latents_msg.embedding))
    assert data["model_version"] == "1.3" and data["step_period_s"] == pytest.approx(0.5)

    trajectory = by_topic["/test/trajectory"]
    assert trajectory["type"] == "PlannedTrajectory"
    data = trajectory["data"]
    assert data["header"]["frame_id"] == "base_link"
    assert data["mode"] == PlannedTrajectory.MODE_UNDISTILLED
    assert data["latent_tokens"] == list(planned_msg.latent_tokens) and data["model_version"] == "0.4"
    assert len(data["points"]) == 8
    for sent, got in zip(planned_msg.points, data["points"], strict=True):
        assert got["time_from_start"] == {"sec": sent.time_from_start.sec, "nanosec": sent.time_from_start.nanosec}
        assert got["pose"]["position"]["x"] == sent.pose.position.x
        assert got["pose"]["position"]["y"] == sent.pose.position.y
        assert got["pose"]["orientation"]["z"] == sent.pose.orientation.z
        assert got["longitudinal_velocity_mps"] == pytest.approx(sent.longitudinal_velocity_mps)
        assert got["heading_rate_rps"] == pytest.approx(sent.heading_rate_rps)
        assert got["acceleration_mps2"] == pytest.approx(sent.acceleration_mps2)


def test_latent_actions_published_before_the_planner_subscribes_still_reach_it(rclpy_context):
    """The student's first outputs may go out before its participant has discovered the
    planner's reader (a lock-stepped player then waits for that plan forever): the latent
    actions QoS keeps them for a late reader; a volatile one would get nothing."""
    from latentvla_ros.ros.qos import LATENT_ACTIONS, STATE

    latents_msg, _ = _messages()
    student = rclpy.create_node("early_student", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(student)
    publisher = student.create_publisher(LatentActionsMsg, "/test/early_latent_actions", LATENT_ACTIONS)
    publisher.publish(latents_msg)  # nobody listens yet
    planner = rclpy.create_node("late_planner", context=rclpy_context)
    executor.add_node(planner)
    late, volatile = [], []
    planner.create_subscription(LatentActionsMsg, "/test/early_latent_actions", late.append, LATENT_ACTIONS)
    planner.create_subscription(LatentActionsMsg, "/test/early_latent_actions", volatile.append, STATE)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not late and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        end = time.monotonic() + 0.5  # what else arrives
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        planner.destroy_node()
        student.destroy_node()
    assert len(late) == 1 and list(late[0].tokens) == list(latents_msg.tokens)
    assert volatile == []
